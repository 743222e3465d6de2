// vital annotate: keyboard-first annotation, image zoom/pan, saving answers with the CSRF header.
// Every change is a POST with the X-CSRF-Token header (a GET never changes anything).
(function () {
  "use strict";

  function cookie(name) {
    const prefix = name + "=";
    for (const part of document.cookie.split(";")) {
      const item = part.trim();
      if (item.startsWith(prefix)) return decodeURIComponent(item.slice(prefix.length));
    }
    return "";
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": cookie("csrf_token") },
      body: JSON.stringify(body),
    });
  }

  const statusElement = document.getElementById("status");
  function status(text, kind) {
    if (!statusElement) return;
    statusElement.textContent = text;
    statusElement.className = kind || "";
  }

  const logout = document.getElementById("logout");
  if (logout) {
    logout.addEventListener("click", async function () {
      await post("/logout", {});
      window.location.href = "/login";
    });
  }

  // Starting (or continuing) a kind of task hands out an item: a POST, then the task's page.
  // When nothing is handed out, the kind's page says why (all done, or signed out).
  async function startNext(kind) {
    try {
      const response = await post("/api/tasks/next?kind=" + encodeURIComponent(kind), {});
      if (response.status === 200) {
        window.location.href = "/tasks/" + (await response.json()).task_id;
        return;
      }
    } catch (error) {
      status("The server cannot be reached. Try again.", "error");
      return;
    }
    window.location.href = "/annotate/" + kind;
  }
  for (const starter of document.querySelectorAll("[data-start]")) {
    starter.addEventListener("click", function (event) {
      event.preventDefault();
      startNext(starter.dataset.start);
    });
  }

  // A login link opened while someone else is signed in: switch only when asked to.
  const switchUser = document.getElementById("switch-user");
  if (switchUser) {
    switchUser.addEventListener("click", async function () {
      const response = await post("/login", { token: switchUser.dataset.token });
      if (response.ok) {
        window.location.href = "/";
        return;
      }
      let detail = response.statusText;
      try { detail = (await response.json()).detail; } catch (ignored) { /* not JSON */ }
      status("Not switched: " + detail, "error");
    });
  }

  const dataElement = document.getElementById("task-data");
  if (!dataElement) return;
  const task = JSON.parse(dataElement.textContent);
  const comment = document.getElementById("comment");
  const prevUrl = task.previous_task_id ? "/tasks/" + task.previous_task_id : null;
  function goNext() {
    if (task.next_task_id) window.location.href = "/tasks/" + task.next_task_id;
    else startNext(task.kind);
  }

  // ---- image viewer: wheel or +/- to zoom at a point, drag to pan, R to fit -------------------------
  const viewer = document.getElementById("viewer");
  const image = document.getElementById("figure-image");
  const windowSelect = document.getElementById("window");
  const view = { scale: 1, x: 0, y: 0, brightness: 1, contrast: 1 };

  function applyView() {
    if (!image) return;
    image.style.transform = "translate(" + view.x + "px," + view.y + "px) scale(" + view.scale + ")";
    image.style.filter = "brightness(" + view.brightness + ") contrast(" + view.contrast + ")";
  }
  function zoomAt(factor, px, py) {
    const scale = Math.min(20, Math.max(1, view.scale * factor));
    const ratio = scale / view.scale;
    view.x = px - (px - view.x) * ratio;
    view.y = py - (py - view.y) * ratio;
    view.scale = scale;
    if (scale === 1) { view.x = 0; view.y = 0; }
    applyView();
  }
  function zoomCenter(factor) { zoomAt(factor, viewer.clientWidth / 2, viewer.clientHeight / 2); }
  function resetView() {
    Object.assign(view, { scale: 1, x: 0, y: 0, brightness: 1, contrast: 1 });
    applyView();
  }

  if (image) {
    image.addEventListener("error", function () {
      status("The image could not be loaded.", "error");
    });
    viewer.addEventListener("wheel", function (event) {
      event.preventDefault();
      const box = viewer.getBoundingClientRect();
      zoomAt(Math.exp(-event.deltaY * 0.0015), event.clientX - box.left, event.clientY - box.top);
    }, { passive: false });
    viewer.addEventListener("dblclick", function (event) {
      const box = viewer.getBoundingClientRect();
      zoomAt(2, event.clientX - box.left, event.clientY - box.top);
    });
    // drag pans; Shift+drag sets contrast (left-right) and brightness (up-down), as in radiology viewers
    let drag = null;
    viewer.addEventListener("pointerdown", function (event) {
      if (event.target.closest(".viewer-tools")) return;
      drag = { x: event.clientX, y: event.clientY, start: Object.assign({}, view), shift: event.shiftKey };
      viewer.setPointerCapture(event.pointerId);
      viewer.classList.add("dragging");
    });
    viewer.addEventListener("pointermove", function (event) {
      if (!drag) return;
      const dx = event.clientX - drag.x;
      const dy = event.clientY - drag.y;
      if (drag.shift) {
        view.contrast = Math.min(5, Math.max(0.2, drag.start.contrast * Math.exp(dx / 200)));
        view.brightness = Math.min(5, Math.max(0.2, drag.start.brightness * Math.exp(-dy / 200)));
      } else {
        view.x = drag.start.x + dx;
        view.y = drag.start.y + dy;
      }
      applyView();
    });
    const endDrag = function () { drag = null; viewer.classList.remove("dragging"); };
    viewer.addEventListener("pointerup", endDrag);
    viewer.addEventListener("pointercancel", endDrag);
  }
  for (const button of document.querySelectorAll("[data-zoom]")) {
    button.addEventListener("click", function () {
      const action = button.dataset.zoom;
      if (action === "in") zoomCenter(1.5);
      else if (action === "out") zoomCenter(1 / 1.5);
      else resetView();
    });
  }
  function showWindow(name) {
    image.src = image.dataset.src + (name === "default" ? "" : "?window=" + encodeURIComponent(name));
  }
  if (windowSelect && image) {
    windowSelect.addEventListener("change", function () { showWindow(windowSelect.value); });
  }
  function cycleWindow() {
    if (!windowSelect || !image) return;
    windowSelect.selectedIndex = (windowSelect.selectedIndex + 1) % windowSelect.options.length;
    showWindow(windowSelect.value);
  }

  // ---- answers ----------------------------------------------------------------------------------------
  let saving = false;

  async function save(answer) {
    if (saving) return;
    saving = true;
    const text = comment.value.trim();
    if (text) answer.comment = text;
    status("Saving…", "busy");
    try {
      const response = await post("/api/tasks/" + task.task_id + "/answer", answer);
      if (response.ok) {
        status("Saved", "saved");
        window.setTimeout(goNext, 150);
        return;
      }
      let detail = response.statusText;
      try { detail = (await response.json()).detail; } catch (ignored) { /* not JSON */ }
      if (response.status === 401) detail = "Your session has ended: open a new login link.";
      status("Not saved: " + (typeof detail === "string" ? detail : JSON.stringify(detail)), "error");
    } catch (error) {
      status("Not saved: the server cannot be reached. Try again.", "error");
    }
    saving = false;
  }

  const choiceButtons = document.querySelectorAll(".choice");
  const articles = Array.from(document.querySelectorAll(".candidate"));
  function markChoice(choice) {
    for (const button of choiceButtons) button.classList.toggle("selected", button.dataset.choice === choice);
    if (task.kind !== "compare") return;
    articles.forEach(function (article, index) {
      const letter = index === 0 ? "A" : "B";
      article.classList.toggle("chosen", choice === letter || choice === "tie");
      article.classList.toggle("rejected", choice === "both_bad");
    });
  }

  // Comparison: one key (or click) records the verdict and moves on.
  const compareKeys = { a: "A", 1: "A", b: "B", 2: "B", t: "tie", 3: "tie", x: "both_bad", 4: "both_bad" };
  function choose(choice) {
    markChoice(choice);
    save({ choice: choice });
  }

  // Demonstrations: best (a radio) and acceptable (checkboxes), saved with Enter.
  const ids = task.candidates.map(function (c) { return c.id; });
  const acceptableBoxes = Array.from(document.querySelectorAll("input[name=acceptable]"));
  const bestRadios = Array.from(document.querySelectorAll("input[name=best]"));
  function highlightCandidates() {
    for (const article of document.querySelectorAll(".candidate")) {
      const id = article.dataset.candidate;
      const box = acceptableBoxes.find(function (b) { return b.value === id; });
      const radio = bestRadios.find(function (r) { return r.value === id; });
      article.classList.toggle("is-acceptable", !!(box && box.checked));
      article.classList.toggle("is-best", !!(radio && radio.checked));
    }
  }
  function pickBest(index) {
    if (index >= ids.length) return;
    bestRadios[index].checked = true;
    acceptableBoxes[index].checked = true;
    highlightCandidates();
  }
  function toggleAcceptable(index) {
    if (index >= ids.length) return;
    const box = acceptableBoxes[index];
    box.checked = !box.checked;
    if (!box.checked && bestRadios[index].checked) bestRadios[index].checked = false;
    highlightCandidates();
  }
  function demosAnswer() {
    const best = bestRadios.find(function (r) { return r.checked; });
    return {
      best: best ? best.value : null,
      acceptable: acceptableBoxes.filter(function (b) { return b.checked; }).map(function (b) { return b.value; }),
    };
  }
  function saveDemos() {
    const answer = demosAnswer();
    if (!answer.best && answer.acceptable.length) {
      status("Pick the best of the acceptable conversations (keys 1–" + ids.length + ").", "error");
      return;
    }
    if (!answer.best) {
      status("Pick the best conversation (1–" + ids.length + "), or press N if none is acceptable.", "error");
      return;
    }
    save(answer);
  }
  function noneAcceptable() {
    for (const box of acceptableBoxes) box.checked = false;
    for (const radio of bestRadios) radio.checked = false;
    highlightCandidates();
    save({ best: null, acceptable: [] });
  }

  for (const input of acceptableBoxes.concat(bestRadios)) {
    input.addEventListener("change", function () {
      if (input.name === "best" && input.checked) pickBest(bestRadios.indexOf(input));
      if (input.name === "acceptable" && !input.checked) {
        const radio = bestRadios[acceptableBoxes.indexOf(input)];
        radio.checked = false;
      }
      highlightCandidates();
    });
  }
  for (const button of choiceButtons) {
    button.addEventListener("click", function () {
      const choice = button.dataset.choice;
      if (task.kind === "compare") choose(choice);
      else if (choice === "none") noneAcceptable();
      else saveDemos();
    });
  }

  // Show the saved answer, so that it can be revised.
  if (task.answer) {
    if (task.kind === "compare") markChoice(task.answer.choice);
    else {
      for (const box of acceptableBoxes) box.checked = task.answer.acceptable.includes(box.value);
      for (const radio of bestRadios) radio.checked = radio.value === task.answer.best;
      if (task.answer.best === null) markChoice("none");
      highlightCandidates();
    }
  }

  // ---- keyboard -------------------------------------------------------------------------------------
  const help = document.getElementById("help");
  document.getElementById("help-toggle").addEventListener("click", function () { help.hidden = !help.hidden; });
  document.getElementById("prev").addEventListener("click", function (event) {
    if (!prevUrl) event.preventDefault();
  });

  document.addEventListener("keydown", function (event) {
    const typing = event.target.closest("textarea, input[type=text], select");
    if (typing) {
      if (event.key === "Escape") event.target.blur();
      else if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && task.kind === "demos") saveDemos();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key.toLowerCase();
    const digit = /^(Digit|Numpad)([1-9])$/.exec(event.code);
    let handled = true;
    if (task.kind === "compare" && !event.shiftKey && compareKeys[key]) choose(compareKeys[key]);
    else if (task.kind === "demos" && digit) {
      const index = Number(digit[2]) - 1;
      if (event.shiftKey) toggleAcceptable(index); else pickBest(index);
    } else if (task.kind === "demos" && key === "n") noneAcceptable();
    else if (task.kind === "demos" && key === "enter") saveDemos();
    else if (key === "arrowleft" || key === "k") { if (prevUrl) window.location.href = prevUrl; }
    else if (key === "arrowright" || key === "j") {
      if (!task.answer && !task.next_task_id) status("Answer this task first.", "error");
      else goNext();
    } else if (key === "c") comment.focus();
    else if (key === "?") help.hidden = !help.hidden;
    else if (key === "+" || key === "=") zoomCenter(1.5);
    else if (key === "-" || key === "_") zoomCenter(1 / 1.5);
    else if (key === "r" || key === "0") resetView();
    else if (key === "w") cycleWindow();
    else handled = false;
    if (handled) event.preventDefault();
  });
})();

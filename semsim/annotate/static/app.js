// The annotation page: one reconstruction at a time, keyboard first. Plain JS, no build step.
"use strict";

const QUESTIONS = {
  class: "Which category does the reconstruction show? Choose \u201cunrecognisable\u201d if you cannot tell.",
  pair: "Do the original and the reconstruction show the same person (or the same kind of thing)?",
};
const NAME_KEY = "flaudit.annotator";
const $ = (id) => document.getElementById(id);

let annotator = localStorage.getItem(NAME_KEY) || "";
let item = null;        // the item shown: {id, mode, choices: [{value, label, key}], images}
let selected = -1;      // index of the chosen (not yet confirmed) answer
let shownAt = null;     // performance.now() when every image of the item had loaded
let busy = false;       // a request is in flight: ignore keys and clicks until it returns

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function showProgress(p) {
  $("progress").textContent = `${p.done} of ${p.total} judged by you \u00b7 ${p.complete} of ${p.items} items complete`;
}

function showLogin(message = "") {
  $("login").hidden = false;
  $("task").hidden = $("done").hidden = $("who").hidden = true;
  $("login-error").textContent = message;
  $("annotator").value = annotator;
  $("annotator").focus();
}

async function call(method, url, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(url, options);
  let data = {};
  try { data = await response.json(); } catch (err) { data = { error: response.statusText }; }
  return { status: response.status, data };
}

async function loadNext(note = "") {
  busy = true;
  try {
    const { status, data } = await call("GET", `/api/next?annotator=${encodeURIComponent(annotator)}`);
    if (status === 422) { showLogin(data.error); return; }
    if (status !== 200) { setStatus(`could not load the next image: ${data.error}`, true); return; }
    $("login").hidden = true;
    $("who").hidden = false;
    $("name").textContent = annotator;
    showProgress(data.progress);
    render(data.item, note);
  } catch (err) {
    setStatus(`the server did not answer (${err}); is \u201cflaudit annotate\u201d still running?`, true);
  } finally {
    busy = false;
  }
}

function render(next, note) {
  item = next;
  selected = -1;
  shownAt = null;
  $("task").hidden = item === null;
  $("done").hidden = item !== null;
  if (item === null) return;
  $("question").textContent = QUESTIONS[item.mode];
  const buttons = $("choices");
  buttons.replaceChildren();
  item.choices.forEach((choice, index) => {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.value = choice.value;
    button.classList.toggle("reject", choice.value === "unrecognisable" || choice.value === "cant_tell");
    const key = document.createElement("kbd");
    key.textContent = choice.key;
    button.append(key, document.createTextNode(choice.label));
    button.title = `key ${choice.key}`;
    button.disabled = true;  // until the images are there: nobody answers what they have not seen
    button.addEventListener("click", () => { select(index); confirm(); });
    buttons.append(button);
  });
  const wanted = item.mode === "pair" ? ["ori", "rec"] : ["rec"];
  $("fig-ori").hidden = item.mode !== "pair";
  let pending = wanted.length;
  for (const which of wanted) {
    const img = $(which);
    img.onload = () => {
      if (--pending > 0) return;
      shownAt = performance.now();
      for (const button of $("choices").children) button.disabled = false;
    };
    img.onerror = () => setStatus(`the ${which === "ori" ? "original" : "reconstruction"} could not be loaded`, true);
    img.removeAttribute("src");  // the same URL again (after an undo) must load, and fire onload, again
    img.src = item.images[which];
  }
  setStatus(note);
}

function select(index) {
  selected = index;
  [...$("choices").children].forEach((button, i) => button.classList.toggle("selected", i === index));
}

async function confirm() {
  if (busy || item === null || selected < 0) return;
  if (shownAt === null) { setStatus("wait for the image to load"); return; }
  const choice = item.choices[selected];
  busy = true;
  let result;
  try {
    result = await call("POST", "/api/answer", {
      annotator, item: item.id, choice: choice.value, latency_ms: Math.round(performance.now() - shownAt),
    });
  } catch (err) {
    busy = false;
    setStatus(`not stored, the server did not answer (${err}); press Enter to try again`, true);
    return;
  }
  busy = false;
  if (result.status === 200 || result.status === 409) {
    await loadNext(result.status === 200 ? `stored \u201c${choice.label}\u201d` : "you had already answered that one");
  } else {
    setStatus(`not stored: ${result.data.error}`, true);
  }
}

async function undo() {
  if (busy) return;
  busy = true;
  let result;
  try {
    result = await call("POST", "/api/undo", { annotator });
  } finally {
    busy = false;
  }
  if (result.status !== 200) { setStatus(`undo failed: ${result.data.error}`, true); return; }
  await loadNext(result.data.undone ? "your last answer was undone: answer this image again" : "nothing to undo");
}

document.addEventListener("keydown", (event) => {
  if (!$("login").hidden || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === "Backspace") { event.preventDefault(); undo(); return; }
  if (item === null) return;
  if (event.key === "Enter") { event.preventDefault(); confirm(); return; }
  const index = item.choices.findIndex((choice) => choice.key === event.key.toLowerCase());
  if (index >= 0) { event.preventDefault(); select(index); }
});

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  annotator = $("annotator").value.trim();
  localStorage.setItem(NAME_KEY, annotator);
  loadNext();
});

$("change").addEventListener("click", () => showLogin());

if (annotator) loadNext(); else showLogin();

// Autosave form body: renders the steps of a declared form, debounces input, and keeps the non-sensitive
// fields in localStorage while the connection is down (navigator offline or the Bokeh websocket lost),
// sending them when it returns. The local copy is removed once the server acknowledged it (ack_seq).
// Sensitive fields are never written to the browser's storage.

const STATUS_TEXT = {filled: "preenchido", invalid: "inválido", missing: "não preenchido"};

function maskDigits(value, mask) {
  const digits = (value || "").replace(/\D/g, "");
  let out = "", i = 0;
  for (const ch of mask) {
    if (i >= digits.length) break;
    if (ch === "9") { out += digits[i++]; } else { out += ch; }
  }
  return out;
}

function applyMask(field, value) {
  if (field.kind === "cpf_cnpj") {
    const n = (value || "").replace(/\D/g, "").length;
    return maskDigits(value, n <= 11 ? "999.999.999-99" : "99.999.999/9999-99");
  }
  if (field.kind === "phone") {
    const d = (value || "").replace(/\D/g, "").slice(0, 11);
    if (d.length <= 2) return d.length ? `(${d}` : "";
    const rest = d.slice(2), split = rest.length > 8 ? 5 : 4;
    return `(${d.slice(0, 2)}) ${rest.slice(0, split)}${rest.length > split ? "-" + rest.slice(split) : ""}`;
  }
  if (field.kind === "money") return (value || "").replace(/[^\d.,-]/g, "");
  return field.mask ? maskDigits(value, field.mask) : value;
}

function fieldId(name) { return "campo-" + name.replace(/[^A-Za-z0-9_-]/g, "-"); }

function formatTime(date) {
  return date.toLocaleTimeString("pt-BR", {hour: "2-digit", minute: "2-digit"});
}

export function render({ model, el, view }) {
  const root = document.createElement("div");
  root.className = "autosave";
  const indicator = document.createElement("div");
  indicator.className = "autosave-indicator";
  indicator.setAttribute("role", "status");
  indicator.setAttribute("aria-live", "polite");
  const steps = document.createElement("ol");
  steps.className = "autosave-steps";
  const body = document.createElement("div");
  body.className = "autosave-body";
  const nav = document.createElement("div");
  nav.className = "autosave-nav";
  root.append(indicator, steps, body, nav);
  el.append(root);

  // This page's own copies are never offered back as if a closed page had left them: the offer below runs
  // once the page is drawn, and by then a quick user may have saved (and this page written a copy) already.
  const instance = Math.random().toString(36).slice(2);
  let values = Object.assign({}, model.values || {});
  let step = model.step || 0;
  let seq = 0;              // increases on every local change
  let sentSeq = 0;          // last sequence handed to the server
  let dirty = false;
  let debounceTimer = null;
  let wsDown = false;
  let resendTimer = null;
  let lastSentAt = 0;

  const form = () => model.form || {steps: []};
  const allFields = () => form().steps.flatMap((s) => s.fields);
  const sensitive = () => new Set(allFields().filter((f) => f.sensitive).map((f) => f.name));
  const online = () => navigator.onLine && !wsDown;
  const storageKey = () => model.storage_key ? "oficina-rascunho:" + model.storage_key : null;

  function readLocal() {
    const key = storageKey();
    if (!key) return null;
    try { return JSON.parse(window.localStorage.getItem(key) || "null"); } catch (e) { return null; }
  }

  function writeLocal() {
    const key = storageKey();
    if (!key || model.read_only) return;
    const hidden = sensitive();
    const kept = {};
    for (const [name, value] of Object.entries(values)) { if (!hidden.has(name)) kept[name] = value; }
    const copy = {values: kept, step, seq, base_version: model.version, saved_at: Date.now(), page: instance};
    try { window.localStorage.setItem(key, JSON.stringify(copy)); } catch (e) { /* storage full: keep in memory */ }
  }

  function dropLocal(upToSeq) {
    const key = storageKey();
    const local = readLocal();
    if (key && local && (upToSeq === undefined || local.seq <= upToSeq)) window.localStorage.removeItem(key);
  }

  function unconfirmed() { return sentSeq > (model.ack_seq || 0); }

  function showIndicator() {
    const state = model.save_state;
    let text = "", cls = state || "idle";
    if (!online() && (dirty || readLocal())) {
      text = "Sem conexão — guardado neste navegador"; cls = "offline";
    } else if (!online()) {
      text = "Sem conexão"; cls = "offline";
    } else if (state === "saving" || (dirty && state !== "conflict") || (state === "saved" && unconfirmed())) {
      // "Salvo" is the last save's word: what was sent since and not yet stored is still "Salvando…" (the page
      // may be closed before the server has it).
      text = "Salvando…"; cls = "saving";
    } else if (state === "saved") {
      text = model.saved_at ? `Salvo às ${model.saved_at}` : "Salvo"; cls = "saved";
    } else if (state === "conflict") {
      text = "Conflito — escolha o que manter"; cls = "conflict";
    } else if (state === "waiting") {
      text = model.message || "Aguardando para salvar…"; cls = "saving";
    } else if (state === "error") {
      text = model.message || "Não foi possível salvar"; cls = "error";
    } else if (state === "readonly") {
      text = "Somente leitura"; cls = "readonly";
    }
    indicator.textContent = text;
    indicator.dataset.state = cls;
    // What the words were chosen from (read by tests and by whoever inspects a stuck page).
    indicator.dataset.basis = JSON.stringify({save_state: state || "", dirty, seq, sent: sentSeq,
                                              ack: model.ack_seq || 0, online: online(), version: model.version});
  }

  function send(kind) {
    if (model.read_only) return;
    if (!online()) { writeLocal(); showIndicator(); scheduleResend(); return; }
    sentSeq = seq;
    dirty = false;
    lastSentAt = Date.now();
    writeLocal();   // kept until the server acknowledges this sequence
    model.send_msg({type: kind || "save", values: Object.assign({}, values), step, seq,
                    base_version: model.version});
    showIndicator();
    scheduleResend();
  }

  function scheduleResend() {
    // While a local copy waits for its acknowledgement, try again now and then: a message sent while the
    // websocket was silently dead is lost, the copy is not.
    if (resendTimer) return;
    resendTimer = setInterval(() => {
      const local = readLocal();
      if (!local) { clearInterval(resendTimer); resendTimer = null; return; }
      const quiet = Date.now() - lastSentAt > 4000;  // a slow server is not a lost message
      if (online() && quiet && model.save_state !== "conflict" && model.save_state !== "waiting") {
        if (!dirty && local.seq > (model.ack_seq || 0)) {
          lastSentAt = Date.now();
          model.send_msg({type: "save", values: Object.assign({}, values), step, seq: local.seq,
                          base_version: local.base_version});
        }
      }
      showIndicator();
    }, Math.max(2500, model.debounce_ms * 2));
  }

  function changed() {
    seq += 1;
    dirty = true;
    if (!online()) writeLocal();
    showIndicator();
    clearTimeout(debounceTimer);
    debounceTimer = setTimeout(() => send("save"), model.debounce_ms);
  }

  // Timer fallback: someone typing without pause still gets saved every few debounce periods.
  const fallback = setInterval(() => { if (dirty) { clearTimeout(debounceTimer); send("save"); } },
                               Math.max(3000, model.debounce_ms * 4));

  function statusOf(name) { return (model.status || {})[name] || "missing"; }

  function renderSteps() {
    steps.innerHTML = "";
    const all = form().steps;
    all.forEach((s, i) => {
      const li = document.createElement("li");
      const counts = {filled: 0, invalid: 0, missing: 0};
      s.fields.forEach((f) => { counts[statusOf(f.name)] += 1; });
      li.className = "autosave-step" + (i === step ? " current" : "") + (counts.invalid ? " has-invalid" : "");
      li.dataset.step = String(i);
      li.textContent = `${i + 1}. ${s.title}`;
      const small = document.createElement("small");
      small.textContent = ` ${counts.filled}/${s.fields.length}`;
      li.append(small);
      li.addEventListener("click", () => goTo(i));
      steps.append(li);
    });
    const summary = document.createElement("li");
    summary.className = "autosave-step" + (step >= all.length ? " current" : "");
    summary.textContent = `${all.length + 1}. Revisão`;
    summary.addEventListener("click", () => goTo(all.length));
    steps.append(summary);
  }

  function inputFor(field) {
    let input;
    if (field.kind === "textarea") {
      input = document.createElement("textarea");
      input.rows = 3;
    } else if (field.kind === "choice") {
      input = document.createElement("select");
      const empty = document.createElement("option");
      empty.value = ""; empty.textContent = "Selecione…";
      input.append(empty);
      for (const [value, label] of field.choices) {
        const option = document.createElement("option");
        option.value = value; option.textContent = label;
        input.append(option);
      }
    } else if (field.kind === "boolean") {
      input = document.createElement("input");
      input.type = "checkbox";
    } else {
      input = document.createElement("input");
      input.type = field.kind === "email" ? "email" : "text";
      if (["money", "integer", "cnpj", "cpf", "cep", "cnj", "date", "phone", "cpf_cnpj"].includes(field.kind)) {
        input.inputMode = field.kind === "money" ? "decimal" : "numeric";
      }
      input.autocomplete = field.sensitive ? "off" : "on";
    }
    input.id = fieldId(field.name);
    input.name = field.name;
    if (field.max_length && field.kind !== "choice" && field.kind !== "boolean") input.maxLength = field.max_length;
    if (field.placeholder) input.placeholder = field.placeholder;
    const current = values[field.name];
    if (field.kind === "boolean") input.checked = current === true;
    else input.value = current === undefined || current === null ? "" : String(current);
    input.disabled = !!model.read_only;
    const onInput = () => {
      if (field.kind === "boolean") {
        values[field.name] = input.checked;
      } else {
        const masked = applyMask(field, input.value);
        if (masked !== input.value && field.kind !== "money") {
          input.value = masked;
        }
        values[field.name] = input.value;
      }
      changed();
    };
    input.addEventListener(field.kind === "choice" || field.kind === "boolean" ? "change" : "input", onInput);
    return input;
  }

  function markField(box, field) {
    const status = statusOf(field.name);
    box.dataset.status = status;
    const badge = box.querySelector(".autosave-badge");
    badge.textContent = STATUS_TEXT[status] + (status === "missing" && field.required ? " (obrigatório)" : "");
    const message = box.querySelector(".autosave-error");
    message.textContent = (model.errors || {})[field.name] || "";
    const input = box.querySelector("input, select, textarea");
    if (input) input.setAttribute("aria-invalid", status === "invalid" ? "true" : "false");
  }

  function renderFields() {
    body.innerHTML = "";
    nav.innerHTML = "";
    const all = form().steps;
    if (step >= all.length) { renderSummary(); return; }
    const current = all[step];
    const title = document.createElement("h3");
    title.textContent = current.title;
    body.append(title);
    if (current.description) {
      const p = document.createElement("p");
      p.textContent = current.description;
      body.append(p);
    }
    for (const field of current.fields) {
      const box = document.createElement("div");
      box.className = "autosave-field";
      box.dataset.field = field.name;
      const label = document.createElement("label");
      label.htmlFor = fieldId(field.name);
      label.textContent = field.label + (field.required ? " *" : "");
      const badge = document.createElement("span");
      badge.className = "autosave-badge";
      label.append(" ", badge);
      const input = inputFor(field);
      box.append(label, input);
      if (field.help) {
        const help = document.createElement("small");
        help.className = "autosave-help";
        help.textContent = field.help;
        box.append(help);
      }
      const message = document.createElement("div");
      message.className = "autosave-error";
      box.append(message);
      markField(box, field);
      body.append(box);
    }
    const back = button("Voltar", "autosave-back", () => goTo(step - 1));
    back.disabled = step === 0;
    nav.append(back, button(step === all.length - 1 ? "Revisar" : "Próximo", "autosave-next", () => goTo(step + 1)));
  }

  function renderSummary() {
    const all = form().steps;
    const title = document.createElement("h3");
    title.textContent = "Revisão antes de enviar";
    body.append(title);
    const table = document.createElement("table");
    table.className = "autosave-summary";
    for (const s of all) {
      const head = table.insertRow();
      const th = document.createElement("th");
      th.colSpan = 3; th.textContent = s.title;
      head.append(th);
      for (const f of s.fields) {
        const row = table.insertRow();
        row.dataset.field = f.name;
        row.dataset.status = statusOf(f.name);
        const value = values[f.name];
        let shown = value === undefined || value === null || value === "" ? "—" : String(value);
        if (f.kind === "boolean") shown = value ? "Sim" : "Não";
        if (f.sensitive && shown !== "—") shown = "•••• (dado sensível)";
        if (f.kind === "choice") { const c = f.choices.find((c) => c[0] === value); if (c) shown = c[1]; }
        row.insertCell().textContent = f.label + (f.required ? " *" : "");
        row.insertCell().textContent = shown;
        row.insertCell().textContent = STATUS_TEXT[statusOf(f.name)];
      }
    }
    body.append(table);
    nav.append(button("Voltar", "autosave-back", () => goTo(all.length - 1)));
    if (!model.read_only) nav.append(button(model.submit_label || "Enviar", "autosave-submit", submit));
  }

  function button(text, cls, onClick) {
    const b = document.createElement("button");
    b.type = "button"; b.className = "autosave-button " + cls; b.textContent = text;
    b.addEventListener("click", onClick);
    return b;
  }

  function goTo(index) {
    const total = form().steps.length;
    index = Math.max(0, Math.min(total, index));
    if (index === step) return;
    step = index;
    model.step = Math.min(step, total - 1);
    renderSteps();
    renderFields();
    // A step change is saved at once (the server keeps a durable version of it).
    if (step < total) { seq += 1; clearTimeout(debounceTimer); send("save"); }
    focusField(nextToFill());
  }

  function submit() {
    clearTimeout(debounceTimer);
    if (!online()) { showIndicator(); return; }
    seq += 1;
    sentSeq = seq;
    dirty = false;
    writeLocal();
    model.send_msg({type: "submit", values: Object.assign({}, values), step: model.step, seq,
                    base_version: model.version});
  }

  function nextToFill() {
    const all = form().steps;
    if (step >= all.length) return null;
    const fields = all[step].fields;
    const bad = fields.find((f) => statusOf(f.name) === "invalid" ||
                                    (f.required && statusOf(f.name) === "missing"));
    return (bad || fields.find((f) => statusOf(f.name) === "missing") || {}).name || null;
  }

  function focusField(name) {
    if (!name) return;
    const input = body.querySelector("#" + fieldId(name));
    if (input) { input.focus(); input.scrollIntoView({block: "center"}); }
  }

  function refreshMarks() {
    for (const box of body.querySelectorAll(".autosave-field")) {
      const field = allFields().find((f) => f.name === box.dataset.field);
      if (field) markField(box, field);
    }
    renderSteps();
    if (step >= form().steps.length) { body.innerHTML = ""; nav.innerHTML = ""; renderSummary(); }
  }

  function fullRender() {
    renderSteps();
    renderFields();
    showIndicator();
  }

  // Server -> browser ------------------------------------------------------------------------------------
  model.on("values", () => { values = Object.assign({}, model.values || {}); dirty = false; fullRender(); });
  model.on("form", fullRender);
  model.on("read_only", fullRender);
  model.on("step", () => {
    if (model.step !== step && !(step === form().steps.length && model.step === step - 1)) {
      step = model.step; renderSteps(); renderFields();
    }
  });
  model.on("status", refreshMarks);
  model.on("errors", refreshMarks);
  model.on("save_state", showIndicator);
  model.on("saved_at", showIndicator);
  model.on("message", showIndicator);
  model.on("ack_seq", () => { if (!dirty) dropLocal(model.ack_seq); showIndicator(); });
  model.on("focus_field", () => {
    const name = model.focus_field;
    if (!name) return;
    const target = form().steps.findIndex((s) => s.fields.some((f) => f.name === name));
    if (target >= 0 && target !== step) { step = target; renderSteps(); renderFields(); }
    setTimeout(() => focusField(name), 50);
  });
  model.on("storage_key", () => offerLocalCopy());
  model.on("msg:custom", (msg) => {
    if (msg && msg.type === "forget_local") { dropLocal(); showIndicator(); }
    if (msg && msg.type === "flush") { if (dirty) { clearTimeout(debounceTimer); send("save"); } }
  });

  // Connectivity ---------------------------------------------------------------------------------------
  function cameBack() {
    showIndicator();
    const local = readLocal();
    if (online() && (dirty || (local && local.seq > (model.ack_seq || 0)))) {
      clearTimeout(debounceTimer);
      send("save");
    }
  }
  const onOffline = () => { writeLocal(); showIndicator(); };
  window.addEventListener("offline", onOffline);
  window.addEventListener("online", cameBack);
  const doc = view && view.model && view.model.document;
  if (doc && doc.on_event) {
    try {
      doc.on_event("connection_lost", () => { wsDown = true; writeLocal(); showIndicator(); });
      doc.on_event("client_reconnected", () => { wsDown = false; cameBack(); });
    } catch (e) { /* older Bokeh without connection events: navigator.onLine still works */ }
  }

  // A copy left by a page closed while offline is offered to the server, which decides (same base version:
  // applied; the same values as the draft: dropped; otherwise shown as a conflict).
  function offerLocalCopy() {
    const local = readLocal();
    if (!local || local.page === instance || model.read_only || !online()) return;
    model.send_msg({type: "local_copy", values: local.values || {}, step: local.step || 0,
                    seq: local.seq || 0, base_version: local.base_version || 0});
  }

  model.on("remove", () => {
    clearInterval(fallback);
    if (resendTimer) clearInterval(resendTimer);
    window.removeEventListener("offline", onOffline);
    window.removeEventListener("online", cameBack);
  });

  fullRender();
  setTimeout(offerLocalCopy, 300);
  if (model.focus_field) setTimeout(() => focusField(model.focus_field), 100);
}

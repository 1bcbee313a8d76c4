// Passerelle's pages work without JavaScript; this file only makes them easier to use.
(function () {
  "use strict";

  // The profile, or the diagnostic: show the part the agent chose.
  var modes = document.querySelectorAll('input[name="mode"]');
  function showMode() {
    var chosen = document.querySelector('input[name="mode"]:checked');
    document.querySelectorAll("[data-mode]").forEach(function (part) {
      part.hidden = !chosen || part.getAttribute("data-mode") !== chosen.value;
    });
  }
  modes.forEach(function (m) { m.addEventListener("change", showMode); });
  if (modes.length) showMode();

  // The diagnostic, one question at a time.
  var questions = Array.prototype.slice.call(document.querySelectorAll(".diagnostic-question"));
  var progress = document.querySelector("[data-progress]");
  if (questions.length) {
    var current = questions.findIndex(function (q) { return !q.querySelector("input:checked"); });
    if (current < 0) current = 0;
    var nav = document.createElement("ul");
    nav.className = "fr-btns-group fr-btns-group--inline fr-btns-group--sm";
    nav.innerHTML =
      '<li><button type="button" class="fr-btn fr-btn--secondary" data-step="-1">Question précédente</button></li>' +
      '<li><button type="button" class="fr-btn" data-step="1">Question suivante</button></li>';
    questions[questions.length - 1].after(nav);
    var show = function (index, focus) {
      current = Math.max(0, Math.min(questions.length - 1, index));
      questions.forEach(function (q, i) { q.hidden = i !== current; });
      nav.querySelector('[data-step="-1"]').disabled = current === 0;
      nav.querySelector('[data-step="1"]').disabled = current === questions.length - 1;
      var answered = questions.filter(function (q) { return q.querySelector("input:checked"); }).length;
      if (progress) progress.textContent = answered + " réponse(s) sur " + questions.length + ".";
      if (focus) {
        var first = questions[current].querySelector("input:checked") || questions[current].querySelector("input");
        if (first) first.focus();
      }
    };
    nav.addEventListener("click", function (event) {
      var step = event.target.getAttribute("data-step");
      if (step) show(current + Number(step), true);
    });
    questions.forEach(function (q) {
      q.addEventListener("change", function () { show(current, false); });
    });
    show(current, false);
    // A link of the error summary to a question shows that question first.
    document.querySelectorAll('a[href^="#q-"]').forEach(function (link) {
      link.addEventListener("click", function (event) {
        var target = document.getElementById(link.getAttribute("href").slice(1));
        var index = questions.findIndex(function (q) { return q.contains(target); });
        if (index < 0) return;
        event.preventDefault();
        show(index, false);
        target.focus();
      });
    });
  }

  // A form sent back with errors: the focus goes to their summary, which links to each field.
  var summary = document.getElementById("erreurs");
  if (summary) summary.focus();

  // Erasing a person's contact asks first (a page of its own, without script): its question
  // takes the focus, so that a keyboard or a screen reader starts there.
  var ask = document.getElementById("effacer");
  if (ask && window.location.hash === "#effacer") ask.focus();

  // No contact field can be typed before the person agreed to the consent wording.
  var consent = document.getElementById("consent");
  var contact = document.querySelector("[data-needs-consent]");
  if (consent && contact) {
    var gate = function () { contact.disabled = !consent.checked; };
    consent.addEventListener("change", gate);
    gate();
  }

  // Commune suggestions while typing.
  document.querySelectorAll("input[data-communes]").forEach(function (input) {
    var list = document.getElementById(input.getAttribute("list"));
    var timer = null;
    input.addEventListener("input", function () {
      clearTimeout(timer);
      if (input.value.length < 2) return;
      timer = setTimeout(function () {
        fetch(input.getAttribute("data-communes") + "?q=" + encodeURIComponent(input.value), {
          credentials: "same-origin",
        })
          .then(function (r) { return r.ok ? r.json() : []; })
          .then(function (found) {
            list.innerHTML = "";
            found.forEach(function (c) {
              var option = document.createElement("option");
              option.value = c.label;
              if (c.detail) option.label = c.detail; // found by its INSEE code, not its postal one
              list.appendChild(option);
            });
          })
          .catch(function () {});
      }, 150);
    });
  });

  // Territory suggestions while the coordinator types (the same list as the communes').
  document.querySelectorAll("input[data-territoires]").forEach(function (input) {
    if (input.hasAttribute("data-suggesting")) return; // this file loaded twice
    input.setAttribute("data-suggesting", "");
    var list = document.getElementById(input.getAttribute("list"));
    var timer = null;
    input.addEventListener("input", function () {
      clearTimeout(timer);
      if (input.value.trim().length < 2) return;
      timer = setTimeout(function () {
        fetch(input.getAttribute("data-territoires") + "?q=" + encodeURIComponent(input.value), {
          credentials: "same-origin",
        })
          .then(function (r) { return r.ok ? r.json() : []; })
          .then(function (found) {
            list.innerHTML = "";
            found.forEach(function (t) {
              var option = document.createElement("option");
              option.value = t.label;
              list.appendChild(option);
            });
          })
          .catch(function () {});
      }, 150);
    });
  });

  // Print the slip.
  document.querySelectorAll("[data-print]").forEach(function (button) {
    button.addEventListener("click", function () { window.print(); });
  });
})();

// The admin panel's click handlers, in one static file instead of inline on...= attributes,
// which the Content Security Policy refuses to run (recovery/http/security.py).
(function () {
  "use strict";

  // Buttons that ask first: <button data-confirm="Cancel this booking?">. A refusal stops
  // the click, so the form is not submitted.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.getAttribute("data-confirm"))) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  });

  // The list's "With selected" menu: <a data-model-action="expire">. modelActions comes
  // from Flask-Admin's actions.js (it checks a row is selected and asks to confirm).
  document.addEventListener("click", function (event) {
    var item = event.target.closest("[data-model-action]");
    if (item && window.modelActions) {
      event.preventDefault();
      window.modelActions.execute(item.getAttribute("data-model-action"));
    }
  });

  // Flask-Admin's templates use href="javascript:void(0)" for links that only open a menu
  // or mark the current tab or page. Following one would run a javascript: URL, which the
  // policy refuses (and reports); such a link is never meant to navigate.
  document.addEventListener(
    "click",
    function (event) {
      var link = event.target.closest("a[href^='javascript:']");
      if (link) {
        event.preventDefault();
      }
    },
    true
  );
})();

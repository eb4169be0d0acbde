// Applies the theme the user chose (saved by ui.js in localStorage under
// "omni-theme") before the first paint. Load it as a classic, blocking
// script in <head>: <script src="ui/theme.js"></script>.
(function () {
  try {
    var t = localStorage.getItem("omni-theme");
    if (t === "light" || t === "dark") document.documentElement.setAttribute("data-theme", t);
  } catch (e) { /* storage may be disabled */ }
})();

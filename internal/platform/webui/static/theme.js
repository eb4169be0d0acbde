// Applies the theme before the first paint: the one the user chose (saved
// by ui.js in localStorage under "omni-theme"), else the system's. It
// always sets <html data-theme="light|dark"> (base.css has one dark
// palette, under [data-theme=dark]) and follows the system's changes
// while no choice is saved, announcing them with a "themechange" event.
// Load it as a classic, blocking script in <head>:
// <script src="ui/theme.js"></script>.
(function () {
  var root = document.documentElement;
  var mq = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
  function saved() {
    try {
      var t = localStorage.getItem("omni-theme");
      return t === "light" || t === "dark" ? t : "";
    } catch (e) { return ""; /* storage may be disabled */ }
  }
  function apply() {
    var t = saved() || (mq && mq.matches ? "dark" : "light");
    if (root.getAttribute("data-theme") === t) return false;
    root.setAttribute("data-theme", t);
    return true;
  }
  apply();
  if (!mq) return;
  var follow = function () {
    if (!saved() && apply()) document.dispatchEvent(new CustomEvent("themechange", { detail: root.getAttribute("data-theme") }));
  };
  if (mq.addEventListener) mq.addEventListener("change", follow);
  else if (mq.addListener) mq.addListener(follow);
})();

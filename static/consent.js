// The demo's consent banner: remember the choice; on Accept let cdp_bridge load Raptor's
// script, on Decline load nothing (the choice is kept, so the banner does not come back).
(function () {
  var accept = document.getElementById("accept-tracking");
  var decline = document.getElementById("decline-tracking");
  if (!accept) return;
  function remember(answer) {
    document.cookie = accept.dataset.cookie + "=" + answer + "; path=/; max-age=31536000; SameSite=Lax";
    document.getElementById("consent-banner").hidden = true;
  }
  accept.addEventListener("click", function () {
    remember("yes");
    document.dispatchEvent(new CustomEvent("enableTracking"));
  });
  if (decline) decline.addEventListener("click", function () { remember("no"); });
})();

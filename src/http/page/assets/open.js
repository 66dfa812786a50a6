// A page link's first step. Its GET answers only this form, so a link preview — which
// fetches a link but submits no form — cannot spend the single-use link; a browser
// submits the form at once, and the POST spends the link and opens the page.
document.getElementById('open-link').submit();

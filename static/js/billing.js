// The dashboard's money pages: a Print button prints the receipt on the page.
document.addEventListener("click", (event) => {
  if (event.target.closest("[data-print]")) {
    window.print();
  }
});

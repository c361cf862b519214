// Light and dark themes: the system's choice (prefers-color-scheme) unless the user picked one; kept in localStorage.

const STORAGE_KEY = "vix-theme";
const CHOICES = ["system", "light", "dark"];

function stored() {
  try {
    const value = localStorage.getItem(STORAGE_KEY);
    return CHOICES.includes(value) ? value : "system";
  } catch {
    return "system";  // storage disabled: the choice lasts for this page only
  }
}

function apply(choice) {
  if (choice === "system") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = choice;
}

/** Applies the stored theme and wires the theme <select>. */
export function setUpTheme(select) {
  const choice = stored();
  apply(choice);
  select.value = choice;
  select.addEventListener("change", () => {
    apply(select.value);
    try {
      if (select.value === "system") localStorage.removeItem(STORAGE_KEY);
      else localStorage.setItem(STORAGE_KEY, select.value);
    } catch {
      // storage disabled: applied, not remembered
    }
  });
}

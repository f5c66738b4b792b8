// The greeting shown on the page.
export function greet(name) {
  return `Hello, ${name}!`;
}

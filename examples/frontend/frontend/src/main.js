// The page's entry point.
import { greet } from "./greet.js";

document.getElementById("greeting").textContent = greet("frontend");

// The Run view in the RepoTune sidebar.
import { actionsHtml, onSnapshot, summaryHtml, wireActions } from "./common";

const root = document.getElementById("root")!;
wireActions(root);
onSnapshot((s) => {
  root.innerHTML = `${summaryHtml(s)}${actionsHtml(s, true)}`;
});

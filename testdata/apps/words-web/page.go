package main

import (
	"html/template"
	"log"
	"net/http"
)

// looks makes the versions tell apart at a glance during a rolling update.
var looks = map[string]struct{ Title, Colour string }{
	"v1": {"Words", "#1f5fbf"},
	"v2": {"Words — new and improved", "#1b8a3a"},
}

func page(w http.ResponseWriter, r *http.Request) {
	look, ok := looks[version]
	if !ok {
		look = looks["v1"]
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	err := pageTmpl.Execute(w, map[string]string{"Title": look.Title, "Colour": look.Colour, "Version": version})
	if err != nil {
		log.Printf("page: %v", err)
	}
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>{{.Title}} {{.Version}}</title>
<style>
body { font-family: sans-serif; margin: 0; }
header { background: {{.Colour}}; color: white; padding: 1em; }
main { padding: 1em; }
#random { font-size: 2em; color: {{.Colour}}; }
</style></head>
<body>
<header><h1>{{.Title}}</h1><span id="version">words-web {{.Version}}</span></header>
<main>
<p>A random word: <span id="random">…</span> <small id="served"></small></p>
<form id="add"><input name="word" placeholder="a new word" required> <button>Add</button></form>
<ul id="words"></ul>
</main>
<script>
async function load() {
  const words = await (await fetch("api/words")).json();
  const ul = document.getElementById("words");
  ul.replaceChildren(...(words.words || []).map(w => { const li = document.createElement("li"); li.textContent = w; return li; }));
  const r = await fetch("api/random");
  const j = await r.json();
  document.getElementById("random").textContent = j.word || "(none yet)";
  document.getElementById("served").textContent = "served by " + j.served_by + " " + j.version;
}
document.getElementById("add").addEventListener("submit", async e => {
  e.preventDefault();
  await fetch("api/words", {method: "POST", body: e.target.word.value});
  e.target.reset();
  load();
});
load();
</script>
</body></html>
`))

// Placeholder: run, ps, rm (issue 4).

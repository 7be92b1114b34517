"""Node types (one module per family) registered in `registry`, with templating and sandboxes."""

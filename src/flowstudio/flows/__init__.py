"""The flow definition: its model, the graph built from it, and validation on save."""

"""The store front's pages, one module per area."""

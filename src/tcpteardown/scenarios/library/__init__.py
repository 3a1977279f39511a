"""The scenario library, one module per family; importing a module registers its scenarios."""

"""HTCondor computing elements: a real HTCondor pool assembled for one application."""

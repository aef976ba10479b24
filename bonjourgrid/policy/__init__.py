"""The desktop owner's policy: when the machine is offered, suspended, given back."""

"""The four Tierline services and the command that runs them."""

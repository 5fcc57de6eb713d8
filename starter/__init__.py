"""The starter: the `checkout-saga` command line and the launcher of the parts."""

"""Small stand-alone experiments that reproduce theory from the papers behind this library."""

"""Pure domain core: values in, values out. No IO, no framework, no database."""

"""The data catalog: each field's category, type, validation, size limit and transform."""

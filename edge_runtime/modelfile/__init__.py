"""The model file: the appended metadata archive (`metadata`), the bounds-checked flatbuffer walk
(`flatbuffer`), the standard TFLite Model Metadata (`standard_metadata`) and the integrity record
(`integrity`). Pure Python: nothing here loads an interpreter or decodes an image."""

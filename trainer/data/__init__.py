"""Training data: labels CSVs to split, decoded shards (`prepare`, `split`), and the tf.data
stream that reads them, augmented (`streaming`, `augment`)."""

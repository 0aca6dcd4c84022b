# stage corpus: to be written

# stage ensemble: to be written

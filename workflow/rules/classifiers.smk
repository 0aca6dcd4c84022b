# stage classifiers: to be written

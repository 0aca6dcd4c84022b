# stage features: to be written

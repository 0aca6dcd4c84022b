# stage report: to be written

# stage faces: to be written

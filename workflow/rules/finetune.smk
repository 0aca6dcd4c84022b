# stage finetune: to be written

"""SER components: BiLSTM + structured self-attention branches and the classifier head."""

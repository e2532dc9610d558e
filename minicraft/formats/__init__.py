"""Official checkpoints in and out: safe file reading, audiocraft's and Hugging Face's layouts, the Hub."""

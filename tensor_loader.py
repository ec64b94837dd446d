"""A mini-batch loader that slices whole tensors instead of transforming one image at a time.

TensorLoader keeps the uint8 MNIST images on the training device and turns each mini-batch
into normalised float32 with the same arithmetic as transforms.ToTensor followed by
transforms.Normalize, so its values equal the reference pipeline's bit for bit. It also draws
the same random numbers as torch.utils.data.DataLoader, so for the same seed both produce the
same mini-batches in the same order, and random numbers drawn later (dropout, the next epoch)
stay in step too.
"""

import math

import torch


class TensorLoader:
    """Mini-batches (images [B, 1, 28, 28] float32, labels [B] int64) from uint8 tensors.

    images: uint8 [N, 28, 28] pixel values 0..255. labels: int64 [N].
    mean, std: the normalisation applied after scaling pixels to [0, 1].
    dataset: the object that len(loader.dataset) and loader.dataset[i] refer to, as with a
    DataLoader.
    """

    def __init__(self, images, labels, batch_size, shuffle, mean, std, device="cpu", dataset=None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")

        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.dataset = dataset
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=self.device).view(-1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=self.device).view(-1, 1, 1)

    def __len__(self):
        """Return the number of mini-batches in one epoch; the last one may be smaller."""
        return math.ceil(len(self.labels) / self.batch_size)

    def __iter__(self):
        sample_count = len(self.labels)

        # A DataLoader draws a base seed for its worker processes from the global generator
        # every time it is iterated, even with no workers.
        torch.empty((), dtype=torch.int64).random_()

        images = self.images
        labels = self.labels
        if self.shuffle:
            # One gather per epoch; every mini-batch is then a slice, with no per-step indexing.
            order = shuffled_order(sample_count).to(self.device)
            images = images[order]
            labels = labels[order]

        for start in range(0, sample_count, self.batch_size):
            end = start + self.batch_size
            yield self.normalize(images[start:end]), labels[start:end]

    def normalize(self, pixels):
        """Turn uint8 pixels [B, 28, 28] into normalised float32 [B, 1, 28, 28].

        The operations are those of ToTensor (convert, divide by 255) and Normalize (subtract
        the mean, divide by the standard deviation), so every value is bit-identical.
        """
        images = pixels.unsqueeze(1).to(torch.float32).div(255)
        return images.sub_(self.mean).div_(self.std)


def shuffled_order(sample_count):
    """Return the permutation that a DataLoader with shuffle=True would use next.

    torch.utils.data.RandomSampler without a generator seeds a fresh CPU generator from one
    int64 drawn from the global generator, then takes torch.randperm from it.
    """
    seed = int(torch.empty((), dtype=torch.int64).random_().item())
    generator = torch.Generator()
    generator.manual_seed(seed)
    return torch.randperm(sample_count, generator=generator)

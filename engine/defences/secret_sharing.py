"""t-of-n Shamir secret sharing (Shamir, "How to Share a Secret", CACM 1979) over Z_p, vectorised with numpy.

    shares = split_secret(key, threshold=3, count=5)           # [(1, b"..."), ..., (5, b"...")]
    key == combine_secret(shares[2:], size=32, threshold=3)    # any 3 of the 5 rebuild it

A secret of L bytes is cut into C = ceil(L / 3) chunks of 3 bytes, s_c < 2^24 < p. For each chunk the
dealer draws a polynomial of degree t - 1 whose constant term is the chunk and whose other t - 1
coefficients are uniform in Z_p (from os.urandom, by rejection), and gives party j its value at x_j = j:

    f_c(x) = s_c + a_{c,1} x + ... + a_{c,t-1} x^(t-1)   (mod p)                  # Shamir (1979)
    y_{j,c} = f_c(x_j),  x_j = j = 1..n;  in matrix form Y = V A  (mod p)          # (n, S*C) = (n, t) @ (t, S*C)

with V[j, k] = x_j^k the Vandermonde matrix and row 0 of A the S secrets' chunks. Any t shares T give
each f_c(0) back by Lagrange interpolation at 0:

    s_c = f_c(0) = sum_{j in T} l_j y_{j,c},  l_j = prod_{i in T, i != j} x_i / (x_i - x_j)   (mod p)

and t - 1 shares say nothing: for every candidate chunk exactly one polynomial of degree t - 1 passes
through (0, candidate) and the t - 1 points, so all candidates are equally likely. Rebuilding from too
few shares gives field elements that are mostly not 3-byte chunks, which `combine` rejects; the rare
value that passes is wrong bytes, so a caller that can check a secret (a key against its public key)
should. A share of an L-byte secret is C words of 4 bytes.

Overflow: every entry is kept reduced below p < 2^26, so a product is below (p - 1)^2 < 2^52, and an
accumulator below p plus BLOCK such products stays below 2^63: int64 never wraps (`_matmul_mod`).
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from typing import Sequence

import numpy as np

P = 67_108_859  # p, the largest prime below 2^26 (2^26 - 5)
CHUNK_BYTES = 3  # s_c < 2^24 < p
BLOCK = (2**63 - 1 - P) // (P - 1) ** 2  # 2048: an element plus BLOCK products of two stay below 2^63

__all__ = ["P", "split", "combine", "split_secret", "combine_secret", "share_size"]


def share_size(size: int) -> int:
    """Bytes of one share of a `size`-byte secret: one 4-byte word per 3-byte chunk."""
    return 4 * math.ceil(size / CHUNK_BYTES)


def random_elements(count: int) -> np.ndarray:
    """`count` uniform elements of Z_p: 26 bits from os.urandom, kept when below p (rejection). (count,) int64."""
    kept = np.empty(0, dtype=np.int64)
    while kept.size < count:
        words = np.frombuffer(os.urandom(4 * (count - kept.size + 8)), dtype="<u4") & np.uint32(2**26 - 1)
        kept = np.concatenate([kept, words[words < P].astype(np.int64)])
    return kept[:count]


@lru_cache(maxsize=8)
def vandermonde(count: int, degree: int) -> np.ndarray:
    """V[j, k] = (j + 1)^k mod p for j < count, k < degree. (n, t) int64, read-only."""
    x = np.arange(1, count + 1, dtype=np.int64)
    v = np.ones((count, degree), dtype=np.int64)
    for k in range(1, degree):
        v[:, k] = v[:, k - 1] * x % P  # < 2^26 * n: no overflow
    v.setflags(write=False)
    return v


def _matmul_mod(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b mod p for entries in [0, p), summed BLOCK terms at a time so that int64 never overflows."""
    out = np.zeros((a.shape[0], b.shape[1]), dtype=np.int64)
    for start in range(0, a.shape[1], BLOCK):
        out = (out + a[:, start : start + BLOCK] @ b[start : start + BLOCK]) % P  # < p + BLOCK (p-1)^2 < 2^63
    return out


def _to_chunks(secrets: np.ndarray) -> np.ndarray:
    """(S, L) uint8 -> (S, C) int64 little-endian 3-byte chunks, the last one zero-padded."""
    count, size = secrets.shape
    padded = np.zeros((count, share_size(size) // 4 * CHUNK_BYTES), dtype=np.int64)
    padded[:, :size] = secrets
    b = padded.reshape(count, -1, CHUNK_BYTES)
    return b[..., 0] | b[..., 1] << 8 | b[..., 2] << 16


def _from_chunks(chunks: np.ndarray, size: int) -> np.ndarray:
    """(S, C) int64 chunks -> (S, size) uint8; ValueError if they are not the chunks of `size`-byte secrets."""
    out = np.stack([chunks & 0xFF, chunks >> 8 & 0xFF, chunks >> 16 & 0xFF], axis=-1).reshape(len(chunks), -1)
    if (chunks >= 2 ** (8 * CHUNK_BYTES)).any() or out[:, size:].any():
        raise ValueError(
            f"the shares do not rebuild {size}-byte secrets: fewer than the threshold, or altered shares"
        )
    return out[:, :size].astype(np.uint8)


def split(secrets: np.ndarray, threshold: int, count: int) -> np.ndarray:
    """t-of-n shares of S secrets at once: (S, L) uint8 -> (n, S, C) int64; row j is the share at x = j + 1."""
    if not 1 <= threshold <= count < P:
        raise ValueError(f"need 1 <= threshold <= count < {P}, got threshold {threshold} and count {count}")
    chunks = _to_chunks(np.asarray(secrets, dtype=np.uint8))  # (S, C)
    coefficients = random_elements((threshold - 1) * chunks.size).reshape(threshold - 1, chunks.size)
    a = np.concatenate([chunks.reshape(1, -1), coefficients])  # (t, S*C), row 0 = f(0) = the secrets
    y = _matmul_mod(vandermonde(count, threshold), a)  # (n, S*C), Y = V A mod p
    return y.reshape(count, *chunks.shape)


def lagrange_at_zero(xs: Sequence[int]) -> np.ndarray:
    """l_j = prod_{i != j} x_i / (x_i - x_j) mod p, the weights that give f(0) from f(x_j). (k,) int64."""
    weights = []
    for j, xj in enumerate(xs):
        num, den = 1, 1
        for i, xi in enumerate(xs):
            if i != j:
                num, den = num * xi % P, den * (xi - xj) % P
        weights.append(num * pow(den, -1, P) % P)
    return np.array(weights, dtype=np.int64)


def combine(xs: Sequence[int], shares: np.ndarray, size: int, threshold: int) -> np.ndarray:
    """S secrets from k >= t shares each: x-coordinates (k,) and values (k, S, C) -> (S, size) uint8."""
    xs = [int(x) for x in xs]
    if len(set(xs)) < threshold:
        raise ValueError(f"{len(set(xs))} distinct shares cannot rebuild a secret with threshold {threshold}")
    if len(set(xs)) != len(xs) or not all(0 < x < P for x in xs):
        raise ValueError(f"share indices must be distinct and in 1..{P - 1}, got {xs}")
    y = np.asarray(shares, dtype=np.int64)
    if len(y) != len(xs) or (y < 0).any() or (y >= P).any():
        raise ValueError(f"expected {len(xs)} shares of values in [0, p), got an array of shape {y.shape}")
    chunks = _matmul_mod(lagrange_at_zero(xs).reshape(1, -1), y.reshape(len(xs), -1))  # (1, S*C): sum l_j y_j
    return _from_chunks(chunks.reshape(y.shape[1:]), size)


def split_secret(secret: bytes, threshold: int, count: int) -> list[tuple[int, bytes]]:
    """t-of-n shares of one secret as (x_j, bytes) pairs, x_j = 1..n."""
    y = split(np.frombuffer(secret, dtype=np.uint8).reshape(1, -1), threshold, count)  # (n, 1, C)
    return [(j + 1, y[j, 0].astype("<u4").tobytes()) for j in range(count)]


def combine_secret(shares: Sequence[tuple[int, bytes]], size: int, threshold: int) -> bytes:
    """The `size`-byte secret back from at least `threshold` (x_j, bytes) shares."""
    values = np.stack([np.frombuffer(s, dtype="<u4") for _, s in shares]) if shares else np.zeros((0, 0))
    return combine([x for x, _ in shares], values[:, None, :], size, threshold)[0].tobytes()

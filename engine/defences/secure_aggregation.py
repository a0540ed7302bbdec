"""Secure aggregation (Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine
Learning", CCS 2017), run in process: simulated clients, and a server that sees only masked vectors.

    total = secure_sum(vectors, threshold=7, drop_before_input={3, 8})   # a SecureRound
    mean = secure_aggregate(client_updates, threshold=7)                  # Params, mean over survivors

The honest-but-curious protocol of the paper's Figure 4 (without the round 3 consistency check,
which only guards against an active server). Notation, variable -> symbol in the paper:

    n clients, threshold t, vectors of m entries in Z_R, R = 2^32
    channel_key      c_u^SK   X25519 key whose agreements encrypt the shares in transit (AES-GCM)
    mask_key         s_u^SK   X25519 key whose agreements s_{u,v} seed the pairwise masks
    self_seed        b_u      16 random bytes that seed the self-mask
    prg(seed)                 PRG: AES-256-CTR keyed by HKDF-SHA256(seed), m 32-bit words

Round 0, AdvertiseKeys:  u sends (c_u^PK, s_u^PK).
Round 1, ShareKeys:      u splits b_u and s_u^SK into t-of-n Shamir shares and sends share v to v,
                         encrypted under KA(c_u^SK, c_v^PK); U2 = the clients that did.
Round 2, MaskedInput:    y_u = x_u + PRG(b_u) + sum_{v in U2, u<v} PRG(s_{u,v})
                                          - sum_{v in U2, u>v} PRG(s_{v,u})   (mod R)   # Fig. 4, round 2
                         U3 = the clients whose y_u arrived; the rest dropped out.
Round 4, Unmasking:      each v in U5 (of U3) sends its share of b_u for u in U3 and of s_u^SK for
                         u in U2 \\ U3; with t shares the server rebuilds them and removes the masks:
                         z = sum_{u in U3} y_u - sum_{u in U3} PRG(b_u)
                             - sum_{u in U2\\U3} sum_{v in U3} p_{v,u}               # Fig. 4, round 4
                         where p_{v,u} = +-PRG(s_{v,u}) is the pairwise mask v added for u.

Inputs are real vectors in fixed point: x -> round(x * 2^f) mod 2^32, decoded as a signed 32-bit
integer over 2^f; each client's rounding is at most half a step 2^-f, so the decoded sum is within
n * 2^-(f+1) of the plain sum. Fewer than t clients at any round aborts with an error: the protocol
never returns a wrong sum silently. Shamir is `secret_sharing`'s, over Z_p with p < 2^26 and
vectorised with numpy: a client splits each secret into n shares in one matrix product, and the
server rebuilds every b_u (and every dropped s_u^SK) in one Lagrange interpolation; a rebuilt key is
checked against its public key.

Cost, n clients of m entries: n(n - 1) key agreements for the channels (one per pair and side,
used both ways) and as many for the masks, and n(n - 1) PRG streams of m words; each client's
shares are one (n, t) @ (t, C) product mod p.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Collection, Sequence

import numpy as np
import torch
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..leakage import Params
from .secret_sharing import combine, share_size, split_secret

RING_BITS = 32  # R = 2^32
SEED_BYTES = 16  # b_u
KEY_BYTES = 32  # s_u^SK, an X25519 private key
SEED_SHARE, KEY_SHARE = share_size(SEED_BYTES), share_size(KEY_BYTES)  # bytes of one Shamir share of each

__all__ = ["SecureAggregationError", "SecureRound", "Client", "Server", "secure_sum", "secure_aggregate"]


class SecureAggregationError(ValueError):
    """The round cannot finish correctly (too few clients left, or a secret that does not rebuild)."""


# --- primitives ----------------------------------------------------------------------------------


def derive_key(secret: bytes, purpose: bytes) -> bytes:
    """A 32-byte key from a shared secret or a seed: HKDF-SHA256, with `purpose` as its info."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"secagg " + purpose).derive(secret)


def prg(seed: bytes, length: int) -> np.ndarray:
    """PRG(seed): `length` uniform words of Z_2^32, the AES-256-CTR keystream under HKDF(seed)."""
    encryptor = Cipher(algorithms.AES(derive_key(seed, b"mask")), modes.CTR(bytes(16))).encryptor()
    stream = bytearray(4 * length + 15)  # update_into wants a block's room to spare
    encryptor.update_into(_zeros(4 * length), stream)  # CTR over zeros: the keystream itself
    return np.frombuffer(stream, dtype="<u4", count=length)  # (m,)


@lru_cache(maxsize=4)
def _zeros(size: int) -> bytes:
    return bytes(size)


def encode(x: torch.Tensor, frac_bits: int) -> np.ndarray:
    """Fixed point in Z_2^32: round(x * 2^f) mod 2^32. (m,) uint32."""
    scaled = torch.round(x.detach().double().cpu().flatten() * 2.0**frac_bits).to(torch.int64).numpy()
    return (scaled % 2**RING_BITS).astype(np.uint32)


def decode(z: np.ndarray, frac_bits: int) -> torch.Tensor:
    """The signed reading of a Z_2^32 vector, over 2^f. (m,) float32."""
    signed = z.astype(np.int64)
    signed[signed >= 2 ** (RING_BITS - 1)] -= 2**RING_BITS
    return torch.from_numpy(signed / 2.0**frac_bits).float()


def public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def agree(private: X25519PrivateKey, public: bytes) -> bytes:
    """KA.agree: the X25519 shared secret of a private key and another party's public key."""
    return private.exchange(load_public(public))


@lru_cache(maxsize=4096)
def load_public(public: bytes) -> X25519PublicKey:
    """A public key parsed once: every client reads each other client's two keys."""
    return X25519PublicKey.from_public_bytes(public)


# --- the parties ---------------------------------------------------------------------------------


class Client:
    """Client u: holds its encoded input x_u and its secrets; talks only through the server."""

    def __init__(self, index: int, x: np.ndarray, threshold: int, count: int) -> None:
        self.u, self.x, self.t, self.n = index, x, threshold, count
        self.channel_key = X25519PrivateKey.generate()  # c_u^SK
        self.mask_key = X25519PrivateKey.generate()  # s_u^SK
        self.self_seed = os.urandom(SEED_BYTES)  # b_u
        self.bytes_sent = 0
        self.keys: dict[int, tuple[bytes, bytes]] = {}
        self.channels: dict[int, bytes] = {}  # v -> AES-GCM key from KA(c_u^SK, c_v^PK), used both ways
        self.shares: dict[int, tuple[bytes, bytes]] = {}  # v -> (share of b_v, share of s_v^SK) held for v

    def _send(self, message):
        self.bytes_sent += message.nbytes if isinstance(message, np.ndarray) else len(message)
        return message

    def advertise_keys(self) -> tuple[bytes, bytes]:
        """Round 0: (c_u^PK, s_u^PK)."""
        return self._send(public_bytes(self.channel_key)), self._send(public_bytes(self.mask_key))

    def share_keys(self, keys: dict[int, tuple[bytes, bytes]]) -> dict[int, bytes]:
        """Round 1: for every other v, AES-GCM(KA(c_u, c_v); u, v, share of b_u, share of s_u^SK)."""
        self.keys = keys
        seed_shares = split_secret(self.self_seed, self.t, self.n)
        key_shares = split_secret(self.mask_key.private_bytes_raw(), self.t, self.n)
        out = {}
        for v, (channel_pk, _) in keys.items():
            if v == self.u:
                self.shares[v] = (seed_shares[v][1], key_shares[v][1])
                continue
            self.channels[v] = derive_key(agree(self.channel_key, channel_pk), b"channel")
            plain = struct.pack("<II", self.u, v) + seed_shares[v][1] + key_shares[v][1]
            nonce = os.urandom(12)
            out[v] = self._send(nonce + AESGCM(self.channels[v]).encrypt(nonce, plain, None))
        return out

    def receive_shares(self, ciphertexts: dict[int, bytes]) -> None:
        """Round 1, end: decrypt the shares other clients sent for u (the server relayed them unread)."""
        for v, message in ciphertexts.items():
            plain = AESGCM(self.channels[v]).decrypt(message[:12], message[12:], None)
            sender, receiver = struct.unpack("<II", plain[:8])
            if (sender, receiver) != (v, self.u):
                raise SecureAggregationError(f"client {self.u}: a share from {v} names {sender} -> {receiver}")
            self.shares[v] = (plain[8 : 8 + SEED_SHARE], plain[8 + SEED_SHARE :])

    def masked_input(self, u2: Collection[int]) -> np.ndarray:
        """Round 2: y_u = x_u + PRG(b_u) + the pairwise masks with every other v in U2 (mod 2^32)."""
        y = self.x + prg(self.self_seed, len(self.x))  # uint32 arithmetic wraps: mod 2^32
        for v in u2:
            if v != self.u:
                add_pairwise_mask(y, self.mask_key, self.keys[v][1], self.u, v)
        return self._send(y)

    def unmasking_shares(self, u3: Collection[int], dropped: Collection[int]) -> dict[int, tuple[int, bytes]]:
        """Round 4: a share of b_u for each survivor u, of s_u^SK for each client that dropped out."""
        index = self.u + 1  # Shamir share x-coordinate of this client
        out = {u: (index, self.shares[u][0]) for u in u3}
        out.update({u: (index, self.shares[u][1]) for u in dropped})
        for _, share in out.values():
            self._send(share)
        return out


def add_pairwise_mask(y: np.ndarray, private: X25519PrivateKey, other_public: bytes, u: int, v: int) -> None:
    """y += p_{u,v} in place: +PRG(s_{u,v}) if u < v, -PRG(s_{u,v}) if u > v, so p_{u,v} + p_{v,u} = 0 (mod 2^32)."""
    stream = prg(agree(private, other_public), len(y))  # (m,)
    (np.add if u < v else np.subtract)(y, stream, out=y)


class Server:
    """The aggregator: relays messages, keeps the masked vectors it saw, and unmasks only their sum."""

    def __init__(self, threshold: int, count: int, length: int) -> None:
        self.t, self.n, self.m = threshold, count, length
        self.keys: dict[int, tuple[bytes, bytes]] = {}
        self.masked: dict[int, np.ndarray] = {}  # y_u, all the server ever sees of an input
        self.u2: list[int] = []

    def _need(self, clients: Collection[int], stage: str) -> None:
        if len(clients) < self.t:
            raise SecureAggregationError(
                f"only {len(clients)} of {self.n} clients {stage}; the threshold is {self.t}, so at most "
                f"{self.n - self.t} may drop out: the round aborts rather than return a wrong sum"
            )

    def collect_keys(self, keys: dict[int, tuple[bytes, bytes]]) -> dict[int, tuple[bytes, bytes]]:
        """Round 0: broadcast everyone's public keys."""
        self._need(keys, "advertised keys")
        self.keys = dict(keys)
        return self.keys

    def route_shares(self, outgoing: dict[int, dict[int, bytes]]) -> dict[int, dict[int, bytes]]:
        """Round 1: forward each encrypted share to its recipient; U2 = the senders."""
        self._need(outgoing, "shared their keys")
        self.u2 = sorted(outgoing)
        return {v: {u: msgs[v] for u, msgs in outgoing.items() if v in msgs} for v in self.u2}

    def collect_masked(self, masked: dict[int, np.ndarray]) -> tuple[list[int], list[int]]:
        """Round 2: keep the y_u; returns (U3, U2 \\ U3) for the unmasking round."""
        self._need(masked, "sent masked inputs")
        self.masked = dict(masked)
        u3 = sorted(masked)
        return u3, [u for u in self.u2 if u not in masked]

    def unmask(self, responses: dict[int, dict[int, tuple[int, bytes]]]) -> np.ndarray:
        """Round 4: rebuild b_u (survivors) and s_u^SK (dropouts) from t shares; return sum x_u mod 2^32."""
        self._need(responses, "answered the unmasking round")
        answers = list(responses.values())[: self.t]  # any t answers will do
        u3 = sorted(self.masked)
        dropped = [u for u in self.u2 if u not in self.masked]
        z = np.zeros(self.m, dtype=np.uint32)
        for u, seed in zip(u3, self._rebuild(u3, answers, SEED_BYTES)):
            np.add(z, self.masked[u], out=z)
            np.subtract(z, prg(seed, self.m), out=z)  # remove PRG(b_u)
        for u, key in zip(dropped, self._rebuild(dropped, answers, KEY_BYTES)):
            mask_key = X25519PrivateKey.from_private_bytes(key)
            if public_bytes(mask_key) != self.keys[u][1]:
                raise SecureAggregationError(
                    f"the rebuilt mask key of dropped client {u} does not match its public key"
                )
            for v in u3:  # y_v holds p_{v,u} = -p_{u,v}: add p_{u,v} back
                add_pairwise_mask(z, mask_key, self.keys[v][1], u, v)
        return z

    def _rebuild(self, owners: list[int], answers: list[dict[int, tuple[int, bytes]]], size: int) -> list[bytes]:
        """The `size`-byte secrets of all `owners` at once, from each answer's share of each."""
        if not owners:
            return []
        xs = [answer[owners[0]][0] for answer in answers]  # (t,) one x-coordinate per answering client
        shares = np.stack([
            np.frombuffer(b"".join(answer[u][1] for u in owners), dtype="<u4").reshape(len(owners), -1)
            for answer in answers
        ])  # (t, owners, C)
        try:
            return [secret.tobytes() for secret in combine(xs, shares, size, self.t)]
        except ValueError as error:
            raise SecureAggregationError(f"the secrets of clients {owners} do not rebuild: {error}") from error


# --- one round, end to end -----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SecureRound:
    """What one secure-aggregation round produced, and what it cost."""

    total: torch.Tensor  # (m,) decoded sum of the surviving clients' inputs
    survivors: tuple[int, ...]  # U3: whose inputs are in the sum
    masked: dict[int, np.ndarray]  # y_u: all the server saw of each input, (m,) uint32
    bytes_per_client: float  # mean bytes sent by a client that stayed to the end
    plain_bytes: int  # what plain FedAvg sends per client: m float32
    step: float  # quantisation step 2^-f

    def __repr__(self) -> str:
        return (
            f"SecureRound(sum of {len(self.survivors)} clients' inputs, {len(self.total):,} entries; the server saw "
            f"only masked vectors; {self.bytes_per_client / self.plain_bytes:.2f}x plain FedAvg's bytes per client)"
        )


def _check(count: int, threshold: int, frac_bits: int, dropped: Collection[int]) -> None:
    if count < 2:
        raise ValueError(f"secure aggregation needs at least 2 clients, got {count}")
    if int(threshold) != threshold or not 2 <= threshold <= count:
        raise ValueError(f"threshold t must be a whole number from 2 to the number of clients {count}, got {threshold}")
    if not 0 <= frac_bits <= 24:
        raise ValueError(f"frac_bits must be from 0 to 24, got {frac_bits}")
    unknown = sorted(set(dropped) - set(range(count)))
    if unknown:
        raise ValueError(f"dropped clients {unknown} are not among clients 0..{count - 1}")


def secure_sum(
    vectors: Sequence[torch.Tensor],
    threshold: int,
    drop_before_input: Collection[int] = (),
    drop_before_unmask: Collection[int] = (),
    frac_bits: int = 16,
) -> SecureRound:
    """Sum the clients' vectors through Bonawitz et al.'s protocol, with clients dropping out on the way.

    `drop_before_input` clients share their keys, then vanish before sending y_u (their input is not
    in the sum; their pairwise masks are removed from their shared key); `drop_before_unmask` clients
    send y_u (their input counts) but not their shares.
    """
    n = len(vectors)
    _check(n, threshold, frac_bits, set(drop_before_input) | set(drop_before_unmask))
    limit = 2.0 ** (RING_BITS - 1 - frac_bits) / n
    largest = max(float(v.detach().abs().max()) for v in vectors)
    if largest >= limit:
        raise ValueError(
            f"values up to {largest:.3g} from {n} clients overflow Z_2^32 at {frac_bits} fractional bits "
            f"(each must stay below {limit:.3g}): clip the updates or lower frac_bits"
        )
    clients = [Client(u, encode(x, frac_bits), threshold, n) for u, x in enumerate(vectors)]
    server = Server(threshold, n, len(clients[0].x))
    keys = server.collect_keys({c.u: c.advertise_keys() for c in clients})  # round 0
    inbox = server.route_shares({c.u: c.share_keys(keys) for c in clients})  # round 1
    for c in clients:
        c.receive_shares(inbox[c.u])
    sending = [c for c in clients if c.u not in set(drop_before_input)]
    u3, dropped = server.collect_masked({c.u: c.masked_input(server.u2) for c in sending})  # round 2
    answering = [c for c in sending if c.u not in set(drop_before_unmask)]
    z = server.unmask({c.u: c.unmasking_shares(u3, dropped) for c in answering})  # round 4
    return SecureRound(
        total=decode(z, frac_bits),
        survivors=tuple(u3),
        masked=server.masked,
        bytes_per_client=float(np.mean([c.bytes_sent for c in answering])),
        plain_bytes=4 * server.m,
        step=2.0**-frac_bits,
    )


def flatten(update: Params) -> torch.Tensor:
    return torch.cat([u.detach().flatten() for u in update.values()])


def unflatten(vector: torch.Tensor, like: Params) -> Params:
    """Cut a flat (m,) vector back into tensors shaped as `like`."""
    out, start = {}, 0
    for name, u in like.items():
        out[name] = vector[start : start + u.numel()].view(u.shape).to(u.dtype)
        start += u.numel()
    return out


def secure_aggregate(
    client_updates: Sequence[Params],
    threshold: int,
    drop_before_input: Collection[int] = (),
    drop_before_unmask: Collection[int] = (),
    frac_bits: int = 16,
) -> Params:
    """FedAvg's mean over the clients whose updates arrived, computed by secure aggregation."""
    vectors = [flatten(u) for u in client_updates]
    result = secure_sum(vectors, threshold, drop_before_input, drop_before_unmask, frac_bits)
    return unflatten(result.total / len(result.survivors), client_updates[0])

"""Synthetic datasets in exact Cell Tracking Challenge layout.

Real CTC archives are downloads; these stand in for them in the demo and the
tests, and exercise the same code paths. Two kinds, after the challenge's 2-D
datasets:

- `fluo`, like Fluo-N2DH-GOWT1: 16-bit fluorescent nuclei of varied size,
  brightness and texture, some touching, on an unevenly lit background, with
  Poisson (shot) and Gaussian (read) noise; 10-25 % foreground.
- `phc`, like PhC-C2DL-PSC: 8-bit phase contrast, small cells in dense colonies,
  each ringed by a bright halo, a few rounded (bright) ones; 5-10 % foreground.

Cells drift, jostle and divide from frame to frame. Every frame gets silver truth
(labels perturbed by a pixel, as computed annotations are) and tracking truth;
every `gold_every`-th frame also gets gold truth (the exact labels), since in the
challenge manual masks exist for a subset of frames only.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
from scipy import ndimage

from cellseg import ctc, tiff

KINDS = ("fluo", "phc")


@dataclasses.dataclass(frozen=True)
class Kind:
    """What a kind of microscopy looks like, in pixels and grey levels."""

    radius: tuple[float, float]  # cell radius range
    foreground: tuple[float, float]  # target foreground fraction range
    aspect: tuple[float, float]  # major / minor axis range
    colonies: int  # 0: cells spread uniformly; n: clustered around n centres
    packing: float  # neighbours are pushed apart below packing * (r1 + r2)
    division_rate: float  # chance per cell and frame
    speed: float  # pixels per frame


FLUO = Kind(radius=(8.0, 17.0), foreground=(0.13, 0.21), aspect=(1.0, 1.5), colonies=0,
            packing=0.9, division_rate=0.03, speed=1.5)
PHC = Kind(radius=(4.0, 7.0), foreground=(0.06, 0.09), aspect=(1.0, 1.8), colonies=3,
           packing=0.85, division_rate=0.05, speed=1.0)


@dataclasses.dataclass(frozen=True)
class Config:
    kind: str = "fluo"
    sequences: int = 2
    frames: int = 10
    height: int = 256
    width: int = 256
    seed: int = 0
    gold_every: int = 3
    density: float = 1.0  # multiplies the kind's foreground fraction: 2-3 gives crowded, touching cells

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; expected one of {KINDS}")
        if not 1 <= self.sequences <= 99:
            raise ValueError(f"sequences must be in 1..99, got {self.sequences}")
        if self.frames < 1:
            raise ValueError(f"frames must be at least 1, got {self.frames}")
        if min(self.height, self.width) < 32:
            raise ValueError(f"frames must be at least 32 x 32 pixels, got {self.height} x {self.width}")
        if not 0.1 <= self.density <= 4.0:
            raise ValueError(f"density must be in 0.1..4, got {self.density}")
        if self.gold_every < 1:
            raise ValueError(f"gold_every must be at least 1, got {self.gold_every}")


@dataclasses.dataclass
class Cell:
    track: int
    y: float
    x: float
    radius: float
    target_radius: float
    aspect: float
    angle: float
    harmonics: np.ndarray  # (3, 2): amplitude and phase of shape modes 2..4
    brightness: float
    vy: float = 0.0
    vx: float = 0.0
    age: int = 0
    rounded: bool = False


# --- one sequence -------------------------------------------------------------


class Simulation:
    """One sequence: iterating yields (image, labels) per frame; `tracks` then holds
    the lineage as (track, first frame, last frame, parent track) rows."""

    def __init__(self, config: Config, sequence: int):
        self.config = config
        self.rng = np.random.default_rng([config.seed, sequence])
        self.tracks: list[tuple[int, int, int, int]] = []

    def __iter__(self):
        config, rng = self.config, self.rng
        kind = FLUO if config.kind == "fluo" else PHC
        shape = (config.height, config.width)
        target_area = rng.uniform(*kind.foreground) * self.config.density * shape[0] * shape[1]
        population = _Population(rng, kind, shape, target_area)
        render = _render_fluo if config.kind == "fluo" else _render_phc
        illumination = _smooth_field(rng, shape, scale=max(shape) / 3)
        for t in range(config.frames):
            if t:
                population.step(t)
            labels, rho = _rasterize(population.cells, shape)
            yield render(rng, population.cells, labels, rho, illumination), labels
        population.close(config.frames - 1)
        self.tracks = population.tracks


class _Population:
    """Cells that move, push each other apart and divide; keeps the lineage."""

    def __init__(self, rng, kind: Kind, shape, target_area: float):
        self.rng, self.kind, self.shape, self.target_area = rng, kind, shape, target_area
        self.cells: list[Cell] = []
        self.first: dict[int, int] = {}
        self.parent: dict[int, int] = {}
        self.tracks: list[tuple[int, int, int, int]] = []
        self.next_track = 1
        centres = [self._uniform_point() for _ in range(kind.colonies)]
        low, high = kind.radius
        mean_area = math.pi * (low**2 + low * high + high**2) / 3  # E[pi r^2], r uniform
        # The population starts below its target and divides up to it; the target is
        # counted a tenth high since neighbours overlap and the frame edge cuts some.
        for _ in range(max(2, int(round(0.85 * 1.1 * target_area / mean_area)))):
            if self.cells and rng.random() < 0.3:  # a touching neighbour
                other = self.cells[rng.integers(len(self.cells))]
                cell = self._new_cell(0, 0.0, 0.0)
                angle = rng.uniform(0, 2 * math.pi)
                distance = kind.packing * (other.radius + cell.radius)
                cell.y = other.y + distance * math.sin(angle)
                cell.x = other.x + distance * math.cos(angle)
            elif centres:
                centre = centres[rng.integers(len(centres))]
                spread = 0.12 * min(shape)
                cell = self._new_cell(0, centre[0] + rng.normal(0, spread), centre[1] + rng.normal(0, spread))
            else:
                cell = self._new_cell(0, *self._uniform_point())
            self.cells.append(cell)
        self._confine()
        self._separate()

    def _uniform_point(self):
        return self.rng.uniform(0, self.shape[0]), self.rng.uniform(0, self.shape[1])

    def _new_cell(self, t: int, y: float, x: float, radius: float | None = None, parent: int = 0) -> Cell:
        rng, kind = self.rng, self.kind
        target = rng.uniform(*kind.radius)
        cell = Cell(
            track=self.next_track,
            y=y,
            x=x,
            radius=target if radius is None else radius,
            target_radius=target,
            aspect=rng.uniform(*kind.aspect),
            angle=rng.uniform(0, math.pi),
            harmonics=np.stack([rng.uniform(0, 0.08, 3), rng.uniform(0, 2 * math.pi, 3)], axis=1),
            brightness=float(rng.lognormal(0.0, 0.45)),
            rounded=bool(rng.random() < 0.15),
        )
        self.first[cell.track] = t
        self.parent[cell.track] = parent
        self.next_track += 1
        return cell

    def step(self, t: int) -> None:
        rng, kind = self.rng, self.kind
        grown_area = sum(math.pi * c.target_radius**2 for c in self.cells)
        dividing = grown_area < 1.1 * self.target_area
        cells = []
        for cell in self.cells:
            cell.age += 1
            if dividing and cell.age > 3 and rng.random() < kind.division_rate:
                cells.extend(self._divide(cell, t))
                continue
            cell.vy = 0.7 * cell.vy + rng.normal(0, kind.speed)
            cell.vx = 0.7 * cell.vx + rng.normal(0, kind.speed)
            cell.y += cell.vy
            cell.x += cell.vx
            cell.angle += rng.normal(0, 0.05)
            cell.radius += 0.25 * (cell.target_radius - cell.radius)
            cells.append(cell)
        self.cells = cells
        self._confine()
        self._separate()

    def _divide(self, cell: Cell, t: int) -> list[Cell]:
        self._end(cell.track, t - 1)
        angle = self.rng.uniform(0, 2 * math.pi)
        offset = 0.55 * cell.radius
        daughters = []
        for sign in (1, -1):
            daughter = self._new_cell(
                t,
                cell.y + sign * offset * math.sin(angle),
                cell.x + sign * offset * math.cos(angle),
                radius=cell.radius / math.sqrt(2),
                parent=cell.track,
            )
            daughter.brightness = cell.brightness * self.rng.uniform(0.9, 1.1)
            daughters.append(daughter)
        return daughters

    def _confine(self) -> None:
        """Keep centres inside the frame; cells may still be cut by the border."""
        for cell in self.cells:
            for axis, size in (("y", self.shape[0]), ("x", self.shape[1])):
                value = getattr(cell, axis)
                if value < 0 or value > size - 1:
                    setattr(cell, axis, float(np.clip(value, 0, size - 1)))
                    setattr(cell, "v" + axis, -getattr(cell, "v" + axis))

    def _separate(self, rounds: int = 4) -> None:
        """Push overlapping cells apart until neighbours at most touch."""
        if len(self.cells) < 2:
            return
        for _ in range(rounds):
            # A whisker of jitter gives cells that sit on the same spot a direction to part in.
            centres = np.array([(c.y, c.x) for c in self.cells]) + self.rng.normal(0, 1e-3, (len(self.cells), 2))
            radii = np.array([c.radius for c in self.cells])
            delta = centres[:, None, :] - centres[None, :, :]
            distance = np.maximum(np.sqrt((delta**2).sum(-1)), 1e-6)
            wanted = self.kind.packing * (radii[:, None] + radii[None, :])
            deficit = np.where(distance < wanted, wanted - distance, 0.0)
            np.fill_diagonal(deficit, 0.0)
            if not deficit.any():
                break
            push = (deficit / distance)[:, :, None] * delta * 0.5
            centres = centres + push.sum(axis=1)
            for cell, (y, x) in zip(self.cells, centres):
                cell.y, cell.x = float(y), float(x)
            self._confine()

    def _end(self, track: int, last: int) -> None:
        self.tracks.append((track, self.first[track], last, self.parent[track]))

    def close(self, last: int) -> None:
        for cell in self.cells:
            self._end(cell.track, last)
        self.tracks.sort()


# --- rendering ----------------------------------------------------------------


def _rasterize(cells: list[Cell], shape) -> tuple[np.ndarray, np.ndarray]:
    """Instance labels (track ids) and each pixel's radial coordinate rho (1 on its cell's edge).

    Where two cells overlap, a pixel goes to the cell it lies deeper in, so touching
    cells share a clean border as in manual annotation.
    """
    labels = np.zeros(shape, np.uint16)
    rho = np.full(shape, np.inf, np.float32)
    for cell in cells:
        window, local = _cell_rho(cell, shape, margin=1.0)
        if window is None:
            continue
        inside = (local <= 1.0) & (local < rho[window])
        labels[window][inside] = cell.track
        rho[window][inside] = local[inside]
    return labels, rho


def _cell_rho(cell: Cell, shape, margin: float):
    """rho = distance / boundary radius in a window around the cell, or (None, None) if off-frame."""
    reach = cell.radius * cell.aspect * (1.3 * margin) + 2
    y0, y1 = int(max(0, math.floor(cell.y - reach))), int(min(shape[0], math.ceil(cell.y + reach) + 1))
    x0, x1 = int(max(0, math.floor(cell.x - reach))), int(min(shape[1], math.ceil(cell.x + reach) + 1))
    if y0 >= y1 or x0 >= x1:
        return None, None
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy - cell.y, xx - cell.x
    theta = np.arctan2(dy, dx)
    phi = theta - cell.angle
    # An ellipse of area pi * radius^2 and the given aspect, wobbled by shape modes 2..4.
    major, minor = cell.radius * math.sqrt(cell.aspect), cell.radius / math.sqrt(cell.aspect)
    boundary = major * minor / np.sqrt((minor * np.cos(phi)) ** 2 + (major * np.sin(phi)) ** 2)
    wobble = 1.0 + sum(a * np.cos(k * theta + p) for k, (a, p) in zip((2, 3, 4), cell.harmonics))
    return (slice(y0, y1), slice(x0, x1)), np.sqrt(dy**2 + dx**2) / (boundary * wobble)


def _smooth_field(rng, shape, scale: float) -> np.ndarray:
    """Zero-mean, unit-range noise varying over about `scale` pixels."""
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma=scale / 4, mode="reflect")
    span = np.ptp(field)
    return ((field - field.mean()) / span if span else field).astype(np.float32)


def _render_fluo(rng, cells, labels, rho, illumination) -> np.ndarray:
    shape = labels.shape
    texture = _smooth_field(rng, shape, scale=6.0)
    signal = np.zeros(shape, np.float32)
    amplitude = {c.track: 600.0 + 3000.0 * c.brightness for c in cells}
    for track, value in amplitude.items():
        inside = labels == track
        # Nuclei are brighter towards the centre and mottled by chromatin.
        signal[inside] = value * (1.0 - 0.3 * rho[inside] ** 2) * (1.0 + 1.2 * texture[inside])
    signal = ndimage.gaussian_filter(signal, sigma=1.2)  # the optics' blur
    background = 450.0 * (1.0 + 0.8 * illumination)
    expected = np.maximum(background + signal, 0.0)
    counts = rng.poisson(expected).astype(np.float64) + rng.normal(0.0, 25.0, shape)
    return np.clip(np.round(counts), 0, 65535).astype(np.uint16)


def _render_phc(rng, cells, labels, rho, illumination) -> np.ndarray:
    shape = labels.shape
    texture = _smooth_field(rng, shape, scale=3.0)
    image = 110.0 * (1.0 + 0.25 * illumination)
    halo = np.zeros(shape, np.float32)
    for cell in cells:
        window, local = _cell_rho(cell, shape, margin=1.6)
        if window is None:
            continue
        # The bright phase halo hugs the outside of the cell edge.
        ring = 75.0 * np.exp(-(((local - 1.12) / 0.15) ** 2)) * (local > 1.0)
        halo[window] = np.maximum(halo[window], ring)
    interior = np.zeros(shape, np.float32)
    for cell in cells:
        inside = labels == cell.track
        base = 45.0 if cell.rounded else -25.0  # rounded cells shine, flat ones are dark
        interior[inside] = base * (1.0 - 0.5 * rho[inside] ** 2) + 30.0 * texture[inside]
    image = image + np.where(labels > 0, interior, halo)
    image = ndimage.gaussian_filter(image, sigma=0.7) + rng.normal(0.0, 6.0, shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def silver(rng, labels: np.ndarray) -> np.ndarray:
    """Labels as a segmentation algorithm might give them: each cell grown or shrunk by a pixel."""
    out = labels.copy()
    for track, box in enumerate(ndimage.find_objects(labels.astype(np.int64)), start=1):
        if box is None:
            continue
        change = rng.choice(("keep", "grow", "shrink"), p=(0.4, 0.3, 0.3))
        if change == "keep":
            continue
        window = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        cell = labels[window] == track
        if change == "grow":
            grown = ndimage.binary_dilation(cell) & (out[window] == 0)
            out[window][grown] = track
        elif cell.sum() > 12:  # never erase a small cell
            lost = cell & ~ndimage.binary_erosion(cell)
            out[window][lost] = 0
    return out


# --- the dataset on disk --------------------------------------------------------


def write_dataset(output_dir: str | os.PathLike, config: Config, progress=None) -> ctc.Layout:
    """Write a synthetic dataset in CTC layout under `output_dir`; returns its discovered layout.

    `progress`, if given, is called with (frames written, frames in all).
    """
    output_dir = os.fspath(output_dir)
    digits = 3 if config.frames <= 1000 else 4
    total = config.sequences * config.frames
    for s in range(1, config.sequences + 1):
        sequence = f"{s:02d}"
        rng = np.random.default_rng([config.seed, s, 1])
        folders = {
            "frames": os.path.join(output_dir, sequence),
            "gold": os.path.join(output_dir, f"{sequence}_GT", "SEG"),
            "tra": os.path.join(output_dir, f"{sequence}_GT", "TRA"),
            "silver": os.path.join(output_dir, f"{sequence}_ST", "SEG"),
        }
        for folder in folders.values():
            os.makedirs(folder, exist_ok=True)
        simulation = Simulation(config, s)
        for t, (image, labels) in enumerate(simulation):
            tiff.write(os.path.join(folders["frames"], ctc.frame_name(t, digits)), image)
            tiff.write_labels(os.path.join(folders["tra"], f"man_track{t:0{digits}d}.tif"), labels)
            tiff.write_labels(os.path.join(folders["silver"], ctc.mask_name(t, digits)), silver(rng, labels))
            if t % config.gold_every == 0:
                tiff.write_labels(os.path.join(folders["gold"], ctc.mask_name(t, digits)), labels)
            if progress:
                progress((s - 1) * config.frames + t + 1, total)
        with open(os.path.join(folders["tra"], "man_track.txt"), "w") as lineage:
            for track, first, last, parent in simulation.tracks:
                lineage.write(f"{track} {first} {last} {parent}\n")
    return ctc.discover(output_dir)

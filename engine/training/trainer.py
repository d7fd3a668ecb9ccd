"""Training loop: SGD/AdamW, warmup + step/cosine schedule, gradient clipping, AMP on CUDA,
checkpoint every epoch with resume, seeded, tqdm bar with the loss, JSON-lines log, loss-curve PNG.
Under torchrun, DistributedDataParallel with the same global batches (engine.training.ddp); rank 0 writes.

Failures keep the work: both data sets are checked completely before the first step (engine.data.coco);
a run that fails or is cancelled after training steps saves OUT/last.pt where it stopped (the same
command resumes from it); temporary checkpoint files of a killed run are removed by the next run.

The model's task (engine.tasks) gives the datasets, the evaluator and the validation score best.pt is
chosen by (instance: mask AP on CocoInstanceDataset; semantic: mIoU, trained on class maps).
"""
from __future__ import annotations

import json
import math
import platform
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from engine.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from engine.data.coco import collate
from engine.data.copy_paste import CrowdPaste
from engine.data.transforms import SarAugment, training_transforms
from engine.device import pick_device
from engine.errors import Cancelled, UserError
from engine.models import build_model
from engine.progress import NoProgress, Progress
from engine.spec import ModelSpec
from engine.tasks import Task, task_of
from engine.tasks.base import format_headline
from engine.training.ddp import DistributedContext, rank_batches, wrap
from engine.training.finetune import load_initial_weights


@dataclass
class TrainConfig:
    coco: str
    images: str
    out_dir: str
    val_coco: str | None = None
    val_images: str | None = None
    bands: list[int] | None = None  # 1-based band indices read from the images
    epochs: int = 12
    batch_size: int = 2
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 200
    schedule: str = "cosine"  # cosine | step
    steps: list[int] = field(default_factory=lambda: [8, 11])  # epochs at which lr x 0.1 (step)
    clip_grad: float = 10.0
    amp: bool = True  # CUDA only
    seed: int = 0
    workers: int = 1
    eval_every: int = 1  # epochs; 0 = only at the end
    crop_size: int = 512
    min_scale: float = 0.8
    max_scale: float = 1.25
    max_iters_per_epoch: int = 0  # 0 = whole epoch (tests use a few)
    device: str = "auto"
    resume: bool = True  # continue from out_dir/last.pt when present
    threads: int = 0  # CPU threads for torch; 0 = all cores
    init: str | None = None  # checkpoint whose weights start the run (not used when resuming)
    checkpoint_every: int = 100  # iterations between last.pt saves inside an epoch (0: at epoch ends only)
    sar_augment: bool = False  # gain, gamma and speckle jitter of SAR amplitude (engine.data.transforms.SarAugment)
    crowd_paste: float = 0.0  # probability of a pasted cluster of objects per image (engine.data.copy_paste)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_factor(it: int, total: int, warmup: int, schedule: str, steps_iters: list[int]) -> float:
    """Multiplier of the base learning rate at iteration `it` (linear warmup from 0.001)."""
    warm = 1.0 if it >= warmup else 0.001 + (1 - 0.001) * it / max(1, warmup)
    if schedule == "cosine":
        return warm * 0.5 * (1 + math.cos(math.pi * min(it, total) / max(1, total)))
    return warm * 0.1 ** sum(it >= s for s in steps_iters)


def _worker_init(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class Trainer:
    """`Trainer(spec, cfg).fit()` -> path of the best checkpoint."""

    def __init__(self, spec: ModelSpec, cfg: TrainConfig, log: Callable[[str], None] = print,
                 progress: Progress | None = None, bar: bool = True, command_line: str | None = None) -> None:
        """`progress` hears iterations done of the run's total (and may cancel); `bar`: a tqdm bar on stderr;
        `command_line`: the command that started the run, kept in every checkpoint's provenance."""
        self.dist = DistributedContext.from_environment(cfg.device)  # one process unless under torchrun
        self.spec, self.cfg = spec, cfg
        self.log = log if self.dist.is_main else (lambda message: None)
        self.progress: Progress = progress or NoProgress()
        self.bar = bar
        self.command_line = command_line
        self.out = Path(cfg.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        seed_everything(cfg.seed)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = pick_device(self.dist.device(cfg.device))
        self.task: Task = task_of(spec)
        zoom = spec.input_scale  # scale jitter is around the zoom the model works at
        self.train_set = self.task.train_dataset(
            spec, cfg.coco, cfg.images, cfg.bands,
            training_transforms(cfg.crop_size, cfg.min_scale * zoom, cfg.max_scale * zoom),
            radiometric=SarAugment() if cfg.sar_augment else None,
            paste=CrowdPaste(p=cfg.crowd_paste) if cfg.crowd_paste > 0 else None,
        )
        self.val_set = (self.task.eval_dataset(spec, cfg.val_coco, cfg.val_images or cfg.images, cfg.bands)
                        if cfg.val_coco else None)
        for dataset in (self.train_set, self.val_set):
            for line in dataset.index.warnings() if dataset is not None else []:
                self.log(f"warning: {line}")
        if not any(self.train_set.index.annotations.values()):
            raise UserError(f"--coco '{cfg.coco}': has no usable annotations, so there is nothing to learn; give a "
                            "COCO file with objects")
        self._remove_stale_temporaries()
        self.model = build_model(spec).to(self.device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if cfg.optimizer == "adamw":
            self.optim: torch.optim.Optimizer = torch.optim.AdamW(params, cfg.lr, weight_decay=cfg.weight_decay)
        else:
            self.optim = torch.optim.SGD(params, cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        self.use_amp = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.epoch, self.iteration, self.best_score = 0, 0, -1.0  # best validation mIoU or mask AP
        self.batch_in_epoch = 0  # batches of the current epoch already trained (resume point)
        self.history: list[dict[str, Any]] = []
        self.started = time.monotonic()  # wall clock of this process, for elapsed_s in the log
        self.saved_iteration = 0  # the iteration OUT/last.pt holds
        self._bar: tqdm | None = None  # the current epoch's progress bar
        last = self.out / "last.pt"
        if cfg.resume and last.is_file():
            self._resume(last)
        elif cfg.init:
            target = load_initial_weights(self.model, cfg.init, spec, self.log)
            self.log(f"initial weights from {cfg.init} -> {target}")
        self.net = wrap(self.model, self.dist, self.device)  # what trains: DDP over the model under torchrun
        self.batch_weights: list[float] = []  # this rank's loss weight per batch of the current loader

    def _loader(self, start_batch: int = 0) -> torch.utils.data.DataLoader:
        """This epoch's batches from `start_batch` on (under torchrun: this rank's part of each global batch, its
        loss weights in `batch_weights`). The order is a seeded permutation per epoch and every item's
        augmentation is seeded by (seed, epoch, item), so a resumed epoch sees exactly the same data."""
        epoch_seed = self.cfg.seed * 100_003 + self.epoch
        order = torch.randperm(len(self.train_set), generator=torch.Generator().manual_seed(epoch_seed)).tolist()
        self.train_set.sample_seed = epoch_seed
        batches, self.batch_weights = rank_batches(order, self.cfg.batch_size, start_batch, self.dist.rank,
                                                   self.dist.world_size)
        return torch.utils.data.DataLoader(
            self.train_set, batch_sampler=batches, collate_fn=collate, num_workers=self.cfg.workers,
            worker_init_fn=_worker_init, persistent_workers=False,
            generator=torch.Generator().manual_seed(epoch_seed),  # workers' base seed: keeps torch's global RNG
        )

    def _iters_per_epoch(self) -> int:
        n = math.ceil(len(self.train_set) / self.cfg.batch_size)
        return min(n, self.cfg.max_iters_per_epoch) if self.cfg.max_iters_per_epoch else n

    def _resume(self, path: Path) -> None:
        ckpt = load_checkpoint(path)
        self.model.load_state_dict(ckpt.state_dict)
        state = ckpt.training_state or {}
        if "optimizer" in state:
            self.optim.load_state_dict(state["optimizer"])
        self.epoch, self.iteration = state.get("epoch", 0), state.get("iteration", 0)
        self.batch_in_epoch = state.get("batch_in_epoch", 0)
        ranks = state.get("torch_rng_ranks")  # one per rank of a torchrun job
        if ranks and len(ranks) == self.dist.world_size:
            torch.set_rng_state(ranks[self.dist.rank])
        elif "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        if "scaler" in state and self.use_amp:
            self.scaler.load_state_dict(state["scaler"])
        self.best_score = state.get("best_score", state.get("best_ap", -1.0))  # best_ap: older runs
        self.history = json.loads(state.get("history", "[]"))
        self.saved_iteration = self.iteration
        # records logged after this checkpoint (a run killed between saves) are trained again: drop them
        if self.dist.is_main:
            (self.out / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in self.history))
        self.log(f"resumed from {path} at epoch {self.epoch}, iteration {self.iteration}")

    def _remove_stale_temporaries(self) -> None:
        """Checkpoint files a killed run was writing (engine.checkpoint writes .NAME.XXXX.tmp, then renames)."""
        for tmp in self.out.glob(".*.pt.*.tmp"):
            tmp.unlink(missing_ok=True)
            self.log(f"removed {tmp}, left by an earlier run that was killed while saving")

    def _keep_work(self, failure: BaseException) -> None:
        """After a failure or cancel: save last.pt at the last finished step when it is newer than the saved one."""
        if self.iteration <= self.saved_iteration:
            return
        try:
            self._save("last.pt", {"stopped_by": type(failure).__name__}, with_state=True)
        except BaseException as exc:  # noqa: BLE001 - the original failure is what the user must see
            self.log(f"could not save {self.out / 'last.pt'} after the failure ({type(exc).__name__}: {exc})")
            return
        self.log(f"saved {self.out / 'last.pt'} at iteration {self.iteration}: run the same command to resume")

    def _provenance(self) -> dict[str, Any]:
        return {
            "train_config": json.dumps(asdict(self.cfg)), "epochs_done": self.epoch, "iterations": self.iteration,
            "train_images": len(self.train_set), "torch": str(torch.__version__), "device": str(self.device),
            "host": platform.node(), "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **({"train_command": self.command_line} if self.command_line else {}),
        }

    def _save(self, name: str, metrics: dict[str, Any], with_state: bool) -> Path:
        """Rank 0 writes OUT/name (every rank calls it for a resumable save: their RNG states are gathered)."""
        rngs = self.dist.gather(torch.get_rng_state()) if with_state else None
        if not self.dist.is_main:
            return self.out / name
        state = None
        if with_state:
            state = {"optimizer": self.optim.state_dict(), "epoch": self.epoch, "iteration": self.iteration,
                     "batch_in_epoch": self.batch_in_epoch, "torch_rng": torch.get_rng_state(),
                     "scaler": self.scaler.state_dict(), "best_score": self.best_score,
                     "history": json.dumps(self.history)}
            if self.dist.enabled:
                state["torch_rng_ranks"] = rngs
        ckpt = Checkpoint(self.spec, self.model.state_dict(), self._provenance(), metrics, state)
        path = save_checkpoint(ckpt, self.out / name)
        if with_state:
            self.saved_iteration = self.iteration
        return path

    def _write_log(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        self.history.append(record)
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def train_one_epoch(self, stop_at: int | None = None) -> float:
        """Train the rest of the current epoch (from `batch_in_epoch`); save last.pt every `checkpoint_every`
        iterations. Returns early, after saving, once the global iteration reaches `stop_at`."""
        self.model.train()
        per_epoch = self._iters_per_epoch()
        total_iters = per_epoch * self.cfg.epochs
        steps_iters = [s * per_epoch for s in self.cfg.steps]
        running = 0.0
        bar = self._bar = tqdm(total=per_epoch, initial=self.batch_in_epoch, dynamic_ncols=True, leave=True,
                               desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}",
                               disable=not (self.dist.is_main and self.bar))
        first = self.batch_in_epoch
        for k, (images, targets) in enumerate(_batches(self._loader(first)), start=first):
            if k >= per_epoch:
                break
            factor = lr_factor(self.iteration, total_iters, self.cfg.warmup_iters, self.cfg.schedule, steps_iters)
            for group in self.optim.param_groups:
                group["lr"] = self.cfg.lr * factor
            images = [im.to(self.device) for im in images]
            targets = [{k2: (v.to(self.device) if torch.is_tensor(v) else v) for k2, v in t.items()} for t in targets]
            with torch.autocast(self.device.type, enabled=self.use_amp):
                losses = self.net(images, targets)
            weight = self.batch_weights[k - first]  # this rank's share of the global batch (1.0 in one process)
            total = sum(losses.values())
            loss = self.dist.mean(total.detach() * weight)  # the global batch's loss
            if not torch.isfinite(loss):
                raise UserError(f"--lr {self.cfg.lr:g}: the loss became {loss.item()} at iteration "
                                f"{self.iteration}; lower --lr or raise --warmup-iters and run again (it resumes "
                                "from last.pt)")
            self.optim.zero_grad(set_to_none=True)
            self.scaler.scale(total * weight).backward()
            self.scaler.unscale_(self.optim)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad)
            self.scaler.step(self.optim)
            self.scaler.update()
            self.iteration += 1
            self.batch_in_epoch = k + 1
            self.progress.advance(self.iteration, total_iters)
            if self.progress.cancelled():
                raise Cancelled("cancelled")
            running = loss.item() if not running else 0.9 * running + 0.1 * loss.item()
            bar.update(1)
            bar.set_postfix(loss=f"{running:.3f}", lr=f"{self.cfg.lr * factor:.2e}")
            if self.iteration % 20 == 0:
                parts = self.dist.mean(torch.stack([v.detach().float() * weight for v in losses.values()]))
                self._write_log({"type": "train", "epoch": self.epoch, "iteration": self.iteration,
                                 "lr": self.cfg.lr * factor, "loss": loss.item(),
                                 "elapsed_s": round(time.monotonic() - self.started, 2),
                                 **{n: round(v.item(), 5) for n, v in zip(losses, parts)}})
            stopping = stop_at is not None and self.iteration >= stop_at
            if stopping or (self.cfg.checkpoint_every and self.iteration % self.cfg.checkpoint_every == 0
                            and self.batch_in_epoch < per_epoch):
                self._save("last.pt", {"train_loss": round(running, 5)}, with_state=True)
            if stopping:
                break
        bar.close()
        return running

    def fit(self, stop_at: int | None = None) -> Path:
        """Train the remaining epochs; returns the path of best.pt (validation mIoU or mask AP) or last.pt.

        `stop_at`: return after that many iterations in all, with last.pt saved there (a later fit resumes).
        A failure or cancel saves last.pt at the last finished step first (`_keep_work`)."""
        try:
            return self._fit(stop_at)
        except BaseException as exc:
            if self._bar is not None:
                self._bar.close()  # before the messages about the failure
            self._keep_work(exc)
            raise

    def _fit(self, stop_at: int | None) -> Path:
        self.progress.started(self._iters_per_epoch() * self.cfg.epochs)
        while self.epoch < self.cfg.epochs:
            loss = self.train_one_epoch(stop_at)
            if self.batch_in_epoch < self._iters_per_epoch():
                return self.out / "last.pt"  # stopped inside the epoch
            self.epoch += 1
            self.batch_in_epoch = 0
            metrics: dict[str, Any] = {"train_loss": round(loss, 5)}
            evaluate_now = self.val_set is not None and (
                self.epoch == self.cfg.epochs or (self.cfg.eval_every and self.epoch % self.cfg.eval_every == 0))
            if evaluate_now and self.dist.is_main:  # under torchrun the other ranks wait in the save's gather
                metrics["val"] = self.task.evaluate(self.model, self.val_set, self.device,
                                                    input_scale=self.spec.input_scale)
                self.model.train()
                score = self.task.validation_score(metrics["val"])
                self.log(f"epoch {self.epoch}: val {format_headline(self.task.headline(metrics['val']), 2)}")
            self._write_log({"type": "epoch", "epoch": self.epoch, "iteration": self.iteration, **metrics})
            if evaluate_now and self.dist.is_main and score > self.best_score:
                self.best_score = score
                self._save("best.pt", metrics, with_state=False)
            self._save("last.pt", metrics, with_state=True)
            if self.dist.is_main:
                plot_loss_curve(self.out / "log.jsonl", self.out / "loss.png", self.task)
            self.dist.barrier()
            if stop_at is not None and self.iteration >= stop_at:
                break
        best = self.out / "best.pt"
        return best if best.is_file() else self.out / "last.pt"


def _batches(loader: torch.utils.data.DataLoader):
    """The loader's batches; a UserError raised in a worker process comes out as its own one line (torch wraps
    it in the worker's traceback)."""
    try:
        yield from loader
    except UserError as exc:
        text = str(exc)
        if text.startswith("Caught"):
            last = text.strip().splitlines()[-1]
            raise UserError(last.split("UserError: ", 1)[-1]) from None
        raise


def plot_loss_curve(log_path: Path, png_path: Path, task: Task) -> None:
    """Training loss per logged iteration and the task's validation score (mIoU or mask AP) per epoch -> PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    train = [r for r in records if r["type"] == "train"]
    evals = [r for r in records if r["type"] == "epoch" and "val" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["iteration"] for r in train], [r["loss"] for r in train], lw=0.8, label="train loss")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    if evals:
        ax2 = ax.twinx()
        ax2.plot([r["iteration"] for r in evals], [task.validation_score(r["val"]) for r in evals], "o-", c="C1",
                 label=f"val {task.score_name}")
        ax2.set_ylabel(f"val {task.score_name} (%)")
    ax.set_title(png_path.parent.name)
    fig.tight_layout()
    tmp = png_path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(png_path)

"""Segmentation on a Dask cluster: the single-process pipeline with tile groups run on workers and the
client merging their results in order (segment.segment_rasters_dask); `--dask local:N | tcp://HOST:8786`
(cluster.dask_client); what a worker runs (work.run_group). DDP training lives in engine.training.ddp."""

"""The exit codes of every lipstream command. A module of its own, importing nothing, so that run_live can
name them before it installs its Ctrl-C handler: a stop asked for while modules load still exits 130."""

EXIT_OK = 0  # done
EXIT_FAILED = 1  # a failure of lipstream's own (one line names it)
EXIT_USAGE = 2  # bad input, a refused option (argparse's own code for it) or an output that cannot be written
EXIT_SOURCE_ENDED = 3  # the video or stream ended early
EXIT_INTERRUPTED = 130  # stopped by Ctrl-C or SIGTERM, as a shell reports Ctrl-C (128 + SIGINT)

"""One module per `audit` verb: HELP, add_arguments(parser), main(args) -> int."""

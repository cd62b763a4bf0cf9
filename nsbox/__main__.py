"""`python -m nsbox`. A Ctrl-C that comes before nsbox.entry has put its handlers in
(while this very import runs) ends the run as one would after it: exit 130, one line."""

try:
    from nsbox.entry import main
except KeyboardInterrupt:
    import sys

    sys.stderr.write("nsbox: interrupted\n")
    sys.exit(130)

if __name__ == "__main__":
    main()

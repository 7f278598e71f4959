/*
 * The keyraft executable: everything, the agent included, is a command of
 * the CLI dispatcher in src/cli.
 */
#include "cli/cli.h"

int main(int argc, char **argv)
{
    return kr_cli_main(argc, argv);
}

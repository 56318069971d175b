#!/usr/bin/env node
// The devmapper command; all of it is in lib/cli.
import { main } from '../lib/cli/main';

process.exitCode = main(process.argv.slice(2));

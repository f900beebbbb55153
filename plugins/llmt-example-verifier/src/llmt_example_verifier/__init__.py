"""An example verifier plugin for llmt, written as any third party would write one."""

// Simulation models for the iCE40 cells that Yosys' ice40/cells_sim.v leaves as black boxes
// but the board top's netlists use. Functional only, no timing. See docs/netlist.md.

// The PLL is modelled as a clock: the output is the clock the bench drives on the board's
// clock pin (the bench runs that pin at the PLL's output frequency); LOCK is high from the
// start.
module SB_PLL40_PAD(input PACKAGEPIN, EXTFEEDBACK, input [7:0] DYNAMICDELAY, input BYPASS,
                    RESETB, LATCHINPUTVALUE, SDI, SCLK,
                    output PLLOUTCORE, PLLOUTGLOBAL, LOCK, SDO);
  parameter FEEDBACK_PATH = "SIMPLE";
  parameter DELAY_ADJUSTMENT_MODE_FEEDBACK = "FIXED";
  parameter DELAY_ADJUSTMENT_MODE_RELATIVE = "FIXED";
  parameter SHIFTREG_DIV_MODE = 1'b0;
  parameter FDA_FEEDBACK = 4'b0000;
  parameter FDA_RELATIVE = 4'b0000;
  parameter PLLOUT_SELECT = "GENCLK";
  parameter DIVR = 4'b0000;
  parameter DIVF = 7'b0000000;
  parameter DIVQ = 3'b000;
  parameter FILTER_RANGE = 3'b000;
  parameter ENABLE_ICEGATE = 1'b0;
  parameter TEST_MODE = 1'b0;
  parameter EXTERNAL_DIVIDE_FACTOR = 1;
  assign PLLOUTCORE = PACKAGEPIN;
  assign PLLOUTGLOBAL = PACKAGEPIN;
  assign LOCK = 1'b1;
  assign SDO = 1'b0;
endmodule

module SB_PLL40_CORE(input REFERENCECLK, EXTFEEDBACK, input [7:0] DYNAMICDELAY, input BYPASS,
                     RESETB, LATCHINPUTVALUE, SDI, SCLK,
                     output PLLOUTCORE, PLLOUTGLOBAL, LOCK, SDO);
  parameter FEEDBACK_PATH = "SIMPLE";
  parameter DELAY_ADJUSTMENT_MODE_FEEDBACK = "FIXED";
  parameter DELAY_ADJUSTMENT_MODE_RELATIVE = "FIXED";
  parameter SHIFTREG_DIV_MODE = 1'b0;
  parameter FDA_FEEDBACK = 4'b0000;
  parameter FDA_RELATIVE = 4'b0000;
  parameter PLLOUT_SELECT = "GENCLK";
  parameter DIVR = 4'b0000;
  parameter DIVF = 7'b0000000;
  parameter DIVQ = 3'b000;
  parameter FILTER_RANGE = 3'b000;
  parameter ENABLE_ICEGATE = 1'b0;
  parameter TEST_MODE = 1'b0;
  parameter EXTERNAL_DIVIDE_FACTOR = 1;
  assign PLLOUTCORE = REFERENCECLK;
  assign PLLOUTGLOBAL = REFERENCECLK;
  assign LOCK = 1'b1;
  assign SDO = 1'b0;
endmodule

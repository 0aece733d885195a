//! Table-driven grading suite: every answer form the grader claims to read,
//! each with near misses that must stay false.
//!
//! `EQUIV` rows are `(gold, answer, expected)`; the answer is put in a
//! `\boxed{}` and graded with the strict (training) config, so these rows test
//! parsing and equivalence. `EXTRACT` rows are `(gold, response, strict,
//! lenient)` and test extraction under both configs.

use gradus_math::{GradeConfig, PercentMode, Reason, grade};

const EQUIV: &[(&str, &str, bool)] = &[
    // Integers and exact rationals.
    ("42", "42", true),
    ("42", "41", false),
    ("-7", "-7", true),
    ("-7", "7", false),
    ("7", "007", true),
    ("0", "-0", true),
    ("0", "0.0", true),
    ("1000000007", "1000000007", true),
    ("1000000007", "1000000009", false),
    (
        "123456789012345678901234567890",
        "123456789012345678901234567890",
        true,
    ),
    (
        "123456789012345678901234567890",
        "123456789012345678901234567891",
        false,
    ),
    ("2^{100}", "1267650600228229401496703205376", true),
    ("2^{100}", "1267650600228229401496703205377", false),
    ("10^{18}+1", "1000000000000000001", true),
    ("10^{18}+1", "10^{18}", false),
    ("4", "2+2", true),
    ("4", "2 \\cdot 2", true),
    ("6", "2 \\times 3", true),
    ("6", "3!", true),
    ("24", "4!", true),
    ("10", "\\binom{5}{2}", true),
    ("10", "\\binom{5}{3}", true),
    ("10", "\\binom{5}{1}", false),
    // Decimals are exact rationals.
    ("0.5", "\\frac{1}{2}", true),
    ("0.5", "0.50", true),
    ("0.5", "0.05", false),
    ("0.4", ".4", true),
    ("-0.75", "-\\frac{3}{4}", true),
    ("0.125", "1/8", true),
    ("18.90", "18.9", true),
    ("18.90", "18.99", false),
    ("1.5", "1.50001", false),
    ("1000", "1000.1", false),
    ("0.1", "0.01", false),
    ("\\frac{1}{3}", "0.333", false),
    ("\\frac{1}{3}", "0.33", false),
    ("\\frac{1}{3}", "0.3333333333", true),
    ("\\frac{2}{3}", "0.6666666666666666", true),
    ("\\frac{1}{12}", "0.0833333333333333", true),
    ("1000000", "1000000.5", false),
    ("1000000", "1000000.0000001", false),
    ("\\frac{1}{8}", "0.1250000001", false),
    ("0.333", "0.3333", false),
    ("0.3333333333", "\\frac{1}{3}", true),
    ("\\frac{1}{3}", "0.\\overline{3}", true),
    ("1", "0.\\overline{9}", true),
    ("0.3", "0.\\overline{3}", false),
    ("\\frac{1}{6}", "0.1\\overline{6}", true),
    // Thousands separators.
    ("7425000", "7,425,000", true),
    ("1000", "1{,}000", true),
    ("1000", "1\\,000", true),
    ("1000", "1 000", true),
    ("11111111100", "11,\\! 111,\\! 111,\\! 100", true),
    ("14916", "14{,}916", true),
    ("14916", "14{,}961", false),
    ("1000.99", "1,000.99", true),
    // Fractions.
    ("\\frac{1}{2}", "\\dfrac{1}{2}", true),
    ("\\frac{1}{2}", "\\tfrac{1}{2}", true),
    ("\\frac{1}{2}", "\\cfrac{1}{2}", true),
    ("\\frac{1}{2}", "1/2", true),
    ("\\frac{1}{2}", "\\frac{2}{4}", true),
    ("\\frac{1}{2}", "\\frac12", true),
    ("\\frac{1}{2}", "\\frac{1}{3}", false),
    ("\\frac{3}{4}", "\\frac{4}{3}", false),
    ("-\\frac{1}{2}", "\\frac{1}{-2}", true),
    ("-\\frac{1}{2}", "\\frac{-1}{2}", true),
    ("-\\frac{1}{2}", "\\frac{1}{2}", false),
    ("\\frac{9}{4}\\pi", "\\frac94\\pi", true),
    ("\\frac{8}{3}", "\\frac83", true),
    ("1", "\\frac3{3}", true),
    ("\\frac{7}{3}", "7/3", true),
    ("\\frac{7}{3}", "3/7", false),
    ("1", "\\frac{1}{3}+\\frac{1}{3}+\\frac{1}{3}", true),
    ("\\frac{1}{2}+\\frac{1}{72}", "\\frac{37}{72}", true),
    (
        "\\frac{1}{2}+\\frac{1}{72}",
        "\\frac{1}{2}+\\frac{2}{3}",
        false,
    ),
    // Mixed numbers.
    ("\\frac{5}{2}", "2\\frac{1}{2}", true),
    ("2\\frac{1}{2}", "\\frac{5}{2}", true),
    ("2\\frac{1}{2}", "1", false),
    ("2\\frac{1}{2}", "2", false),
    ("3\\frac{1}{4}", "3.25", true),
    ("\\frac{40}{9}", "4 4/9", true),
    ("4", "4 4/9", false),
    ("\\frac{40}{9}", "4 + 4/9", true),
    ("-2\\frac{1}{2}", "-\\frac{5}{2}", true),
    // Radicals.
    ("\\sqrt{2}", "\\sqrt2", true),
    ("\\sqrt{2}", "2", false),
    ("\\sqrt{2}", "2^{1/2}", true),
    ("\\sqrt{2}", "\\sqrt{3}", false),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}", true),
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", true),
    ("\\frac{\\sqrt{2}}{2}", "\\frac{\\sqrt{3}}{2}", false),
    ("2+\\sqrt{3}", "\\frac{1}{2-\\sqrt{3}}", true),
    ("2-\\sqrt{3}", "\\frac{1}{2-\\sqrt{3}}", false),
    ("3", "\\sqrt{9}", true),
    ("2", "\\sqrt[3]{8}", true),
    ("-2", "\\sqrt[3]{-8}", true),
    ("2", "\\sqrt[4]{16}", true),
    ("2", "\\sqrt[4]{8}", false),
    ("4\\sqrt{2}", "\\sqrt{32}", true),
    ("4", "4\\sqrt{2}", false),
    ("1-\\sqrt{2}", "1", false),
    ("10\\sqrt{3}+2", "10\\sqrt3 + \\sqrt{4}", true),
    (
        "\\frac{5\\sqrt{42}}{27}",
        "\\frac{10\\sqrt{10.5}}{27}",
        true,
    ),
    ("\\sqrt{17}", "4.123105625617661", true),
    ("\\sqrt{17}", "4.1231", false),
    ("\\sqrt{2}", "sqrt(2)", true),
    ("\\frac{\\sqrt{3}}{3}", "sqrt(3)/3", true),
    // Powers.
    ("1024", "2^{10}", true),
    ("1000", "2^{10}", false),
    ("64", "8^2", true),
    ("8", "8^2", false),
    ("\\frac{1}{8}", "2^{-3}", true),
    ("4", "16^{1/2}", true),
    ("27", "9^{3/2}", true),
    (
        "\\frac{2^{2005}+1}{3 \\cdot 2^{2006}}",
        "\\frac{1}{3 \\cdot 2^{2006}}",
        false,
    ),
    ("x^{2/3}", "\\sqrt[3]{x}^2", true),
    ("x^{2/3}", "\\sqrt[3]{x^2}", true),
    ("x^{3/2}", "\\sqrt[3]{x}^2", false),
    // Constants.
    ("\\pi", "\\pi", true),
    ("\\frac{\\pi}{2}", "\\pi/2", true),
    ("\\frac{4}{3}\\pi", "\\frac{4\\pi}{3}", true),
    ("36\\pi", "36", false),
    ("2\\pi", "6.28", false),
    ("2\\pi", "6.283185307179586", true),
    ("\\pi r^2", "r^2\\pi", true),
    ("2\\pi", "2\\pi r", false),
    ("e", "2.718", false),
    ("e", "2.718281828459045", true),
    ("e^2", "e \\cdot e", true),
    ("2", "\\ln(e^2)", true),
    ("1", "\\ln e", true),
    ("3", "\\log_2 8", true),
    ("3", "\\log_{2}(8)", true),
    ("2", "\\log_{10} 100", true),
    (
        "1 - \\frac{1}{\\mathrm{e}}",
        "1 + \\frac{1}{\\mathrm{e}}",
        false,
    ),
    ("1 - \\frac{1}{\\mathrm{e}}", "\\frac{e-1}{e}", true),
    // Complex numbers.
    ("-1", "i^2", true),
    ("-1", "e^{i\\pi}", true),
    ("i", "-i", false),
    ("3+4i", "4i+3", true),
    ("3+4i", "3-4i", false),
    ("-2+2i", "2-2i", false),
    (
        "\\frac{1}{2}+\\frac{\\sqrt{3}}{2}i",
        "\\frac{1+i\\sqrt{3}}{2}",
        true,
    ),
    ("5", "|3+4i|", true),
    // Scientific notation.
    ("300000", "3 \\times 10^5", true),
    ("300000", "3e5", true),
    ("300000", "3 \\times 10^4", false),
    ("0.001", "1e-3", true),
    ("0.001", "10^{-3}", true),
    ("0.001", "10^{-2}", false),
    ("6.02\\times10^{23}", "6.02\\times10^{22}", false),
    ("6.02\\times10^{23}", "602000000000000000000000", true),
    ("5\\times10^{3}", "50000", false),
    ("5\\times10^{3}", "5000", true),
    ("3\\times 10^{4}", "3\\times 10^{5}", false),
    // Percent (default mode: either reading of the sign).
    ("25\\%", "0.25", true),
    ("25\\%", "25", true),
    ("25\\%", "25\\%", true),
    ("25\\%", "26\\%", false),
    ("50\\%", "\\frac{1}{2}", true),
    ("12.5\\%", "12.5", true),
    ("0.25", "25\\%", true),
    ("12\\%", "0.12\\%", false),
    ("28\\%", "28 percent", true),
    ("28\\%", "28 pct", true),
    ("\\frac{7}{25}", "28\\%", true),
    ("28/100", "28", false),
    ("28\\%", "0.29", false),
    // Degrees.
    ("45^\\circ", "45", true),
    ("45^\\circ", "45°", true),
    ("45^\\circ", "45^{\\circ}", true),
    ("45^\\circ", "135^\\circ", false),
    ("120^\\circ", "120 \\text{ degrees}", true),
    ("60^\\circ", "120^\\circ", false),
    ("90^\\circ", "90^\\circ", true),
    // Units and text words.
    ("5", "5 \\text{ cm}", true),
    ("5\\text{ cm}", "5", true),
    ("4", "4\\text{ m/s}", true),
    ("15", "15\\mbox{ cm}^2", true),
    ("125", "125\\textnormal{ miles}", true),
    ("7\\text{ days}", "8\\text{ days}", false),
    ("10\\text{ units}", "100", false),
    ("\\$18.90", "18.9", true),
    ("18.90", "\\$18.99", false),
    ("16386.20", "\\$16,\\!386.20", true),
    ("13", "\\text{13}", true),
    // Spacing and sizing commands.
    ("\\frac{1}{3}", "\\left( \\frac{1}{3} \\right)", true),
    ("(x-2)(x+2)", "\\left(x-2\\right)\\left(x+2\\right)", true),
    (
        "\\frac{1}{2}+\\frac{1}{72}",
        "\\tfrac{1}{2} +\\! \\frac1{72}",
        true,
    ),
    ("12", "1\\;2", false),
    ("6", "\\displaystyle 6", true),
    ("2\\sqrt{2}", "2 \\, \\sqrt{2}", true),
    ("\\frac{1}{2}", "\\Big( \\frac{1}{2} \\Big)", true),
    // Variables and symbolic expressions (random-point evaluation).
    ("x^2-1", "(x-1)(x+1)", true),
    ("x^2-1", "(x-1)^2", false),
    ("(x+1)^2", "x^2+2x+1", true),
    ("(x+1)^2", "x^2+x+1", false),
    ("a^2-b^2", "(a-b)(a+b)", true),
    ("a^2-b^2", "(b-a)(a+b)", false),
    ("\\frac{x+2}{7}", "\\frac{x}{7}+\\frac{2}{7}", true),
    ("\\frac{n(n+1)}{2}", "\\frac{n^2+n}{2}", true),
    ("\\frac{n(n+1)}{2}", "\\frac{n^2-n}{2}", false),
    ("\\frac{a}{b}", "a/b", true),
    ("\\frac{a}{b}", "b/a", false),
    ("2\\sin x\\cos x", "\\sin 2x", true),
    ("2\\sin x\\cos x", "\\sin x", false),
    ("1", "\\sin^2 x + \\cos^2 x", true),
    ("\\sec^2(y)", "\\tan^2(y)+1", true),
    ("\\tan^2(y)+1", "\\sec^2(y)", true),
    ("\\sec^2(y)", "\\tan^2(y)", false),
    ("x", "y", false),
    ("xy", "yx", true),
    ("6", "x", false),
    ("(a+5)(b+2)", "(+5)(b+2)", false),
    ("\\frac{\\pi r}{h+r}", "\\frac{r\\pi}{r+h}", true),
    ("\\frac{\\pi r}{h+r}", "\\frac{\\pi h}{h+r}", false),
    (
        "-\\frac{2(x^2+6)}{9(x^2-2)\\sqrt[3]{x^2-2}^2}",
        "-\\frac{8x^2}{9(x^2-2)^{5/3}}+\\frac{2}{3(x^2-2)^{2/3}}",
        true,
    ),
    ("\\sum_{k=1}^{n} k", "\\frac{n(n+1)}{2}", true),
    ("\\sum_{k=1}^{n} k^2", "\\frac{n(n+1)}{2}", false),
    ("\\sum_{k=1}^{10} k", "55", true),
    ("\\prod_{k=1}^{5} k", "120", true),
    ("y_1 + y_2", "y_2 + y_1", true),
    ("y_1 + y_2", "y_1 + y_3", false),
    ("f(x)", "f(y)", false),
    ("\\alpha + \\beta", "\\beta + \\alpha", true),
    ("\\alpha + \\beta", "\\alpha + \\gamma", false),
    ("|x|", "|x|", true),
    ("\\lfloor 7/2 \\rfloor", "3", true),
    ("\\lceil 7/2 \\rceil", "3", false),
    // Sets.
    ("\\{1,2\\}", "\\{2,1\\}", true),
    ("\\{1,2\\}", "\\{1,2,3\\}", false),
    ("\\{1,2\\}", "\\{1,3\\}", false),
    ("\\{1,2,3\\}", "\\{1,2\\}", false),
    ("\\emptyset", "\\{\\}", true),
    ("\\emptyset", "\\varnothing", true),
    ("\\emptyset", "\\{0\\}", false),
    ("\\{-2021, 2021\\}", "\\pm 2021", true),
    ("\\pm 2021", "\\{-2021, 2021\\}", true),
    ("\\pm 2021", "2021", false),
    ("\\{\\frac{1}{2}, 3\\}", "\\{3, 0.5\\}", true),
    ("\\{1, 2\\}", "{1, 2}", true),
    ("[1,3]", "\\{1,3\\}", false),
    ("(3,1)", "\\{1,3\\}", false),
    // Tuples and points: order matters.
    ("(1,2)", "(1,2)", true),
    ("(1,2)", "(2,1)", false),
    ("(\\frac12, 3)", "(0.5, 3)", true),
    ("(6,31,-1)", "(6,31,-1)", true),
    ("(6,31,-1)", "(6,31,1)", false),
    ("(6,31,-1)", "(6,31)", false),
    (
        "(3, \\frac{\\pi}{2})",
        "\\left( 3, \\frac{\\pi}{2} \\right)",
        true,
    ),
    ("(3, \\frac{\\pi}{2})", "(3, \\frac{\\pi}{3})", false),
    ("(p,q)=(3,2)", "(3, 2)", true),
    ("(p,q)=(3,2)", "(2, 3)", false),
    ("\\langle 1, 2, 3 \\rangle", "(1, 2, 3)", true),
    ("(0;0;1)", "(0,0,1)", true),
    // Intervals and unions: openness matters.
    ("[0,1)", "[0,1)", true),
    ("[0,1)", "[0,1]", false),
    ("(0,1)", "(0,1]", false),
    ("(0,1)", "[0,1)", false),
    ("[-2,7]", "[-2,7)", false),
    ("[0,9)", "[0,1)", false),
    ("[1,2]", "(1,2)", false),
    ("(\\frac{3}{5},\\frac{8}{3}]", "(0.6,\\frac{8}{3}]", true),
    ("(\\frac{3}{5},\\frac{8}{3}]", "(0.6,2.6667]", false),
    ("(-\\infty, 3]", "(-\\infty,3]", true),
    ("(-\\infty, 3]", "(-\\infty,3)", false),
    ("(-\\infty, 3]", "(3, \\infty)", false),
    ("[2, \\infty)", "[2,\\infty)", true),
    ("(-\\infty,\\infty)", "\\mathbb{R}", true),
    ("\\mathbb{R}", "(-\\infty, \\infty)", true),
    ("(-\\infty, \\infty)", "\\text{all real numbers}", true),
    ("\\mathbb{R}", "(0, \\infty)", false),
    ("(2, 12) \\cup (12, 102)", "(12, 102) \\cup (2, 12)", true),
    ("(2, 12) \\cup (12, 102)", "(2, 12] \\cup (12, 102)", false),
    (
        "(-\\infty,-3]\\cup[2,\\infty)",
        "(-\\infty, -3] \\cup [2, \\infty)",
        true,
    ),
    ("[-3,2]", "(-\\infty, -3] \\cup [2, \\infty)", false),
    ("x \\in [-2,7]", "[-2,7]", true),
    ("[-2,7]", "x \\in [-2,7]", true),
    // Inequalities as intervals and as relations.
    ("(0,\\infty)", "x>0", true),
    ("(0,\\infty)", "x \\ge 0", false),
    ("[3, \\infty)", "x \\geq 3", true),
    ("x>2", "2<x", true),
    ("x \\ge 2", "x > 2", false),
    ("x > -2", "x > 2", false),
    ("x < 1", "-x > -1", true),
    ("x < 1", "x > -1", false),
    ("x >= 5", "x \\geq 5", true),
    ("x \\geq 5", "x \\leq 5", false),
    ("-793 < a < 10", "(-793, 10)", true),
    ("0<f(x)<1", "(0,1)", true),
    ("1 \\le x \\le 4", "[1, 4]", true),
    ("1 \\le x \\le 4", "[1, 4)", false),
    ("2x + 1 > 5", "x > 2", true),
    ("2x + 1 > 5", "x < 2", false),
    // Equations.
    ("x=3", "3", true),
    ("x=3", "x=-3", false),
    ("x=3", "-3", false),
    ("3", "x = 3", true),
    ("1", "k=1", true),
    ("y=x^2", "y=x^3", false),
    ("y=2x+1", "y=2x-1", false),
    ("y=2x+1", "y = 1 + 2x", true),
    ("x+y=1", "2x+2y=2", true),
    ("x+y=1", "x+y=2", false),
    ("y = -2x + 3", "2x + y = 3", true),
    ("y = -2x + 3", "2x - y = 3", false),
    ("x-2y+z-1=0", "-x+2y-z+1=0", true),
    ("5x - 7y + 11z + 4 = 0", "x + y - z + 2 = 0", false),
    ("a +3z = 0", "0", false),
    ("a^2 + b = 0", "0", false),
    ("f(x)=1", "1", true),
    ("A:B=1", "1", true),
    (
        "\\frac{NO}{BO}=\\frac{1}{\\sqrt{6}}",
        "\\frac{1}{\\sqrt{6}}",
        true,
    ),
    ("D = (0, 1)", "D = (0, 1)", true),
    ("D = (0, 1)", "D = (0, 1.5)", false),
    ("x = 2, x = -3", "x = -3, x = 2", true),
    ("x = 2", "x = 2 \\text{ or } x = 3", false),
    ("a=2, b=3", "a=3, b=2", false),
    ("a=2, b=3", "b=3, a=2", true),
    ("x=1 \\text{ or } x=2", "x \\in \\{1,2\\}", true),
    (
        "x = \\frac{-1 \\pm \\sqrt{13}}{4}",
        "\\frac{-1+\\sqrt{13}}{4}, \\frac{-1-\\sqrt{13}}{4}",
        true,
    ),
    (
        "x = \\frac{-1 \\pm \\sqrt{13}}{4}",
        "\\frac{-1+\\sqrt{13}}{4}",
        false,
    ),
    // Ordered vs unordered lists.
    ("1, 2, 3", "3, 2, 1", true),
    ("1, 2, 3", "1, 2", false),
    ("1, 2, 3", "1, 2, 3, 4", false),
    ("19, 46, \\text{ and } 82", "19, 46, 82", true),
    ("6 \\text{ and } 8", "8, 6", true),
    ("21,16 \\text{ or } 11", "21,16,11", true),
    ("-12;-11;-10", "\\{-12, -11, -10\\}", true),
    ("(2, 2), (1, 3)", "(1, 3), (2, 2)", true),
    ("(2, 2), (1, 3)", "(2, 2), (3, 1)", false),
    ("p=5,q=2;p=7,q=2", "(5,2),(7,2)", true),
    ("p=5,q=2;p=7,q=2", "(5,2),(2,7)", false),
    ("1:2:3", "1:2:3", true),
    ("1:2:3", "3:2:1", false),
    ("12:00", "1:00", false),
    ("1:2:3:\\ldots", "1:4:9:\\ldots", false),
    // Matrices.
    (
        "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
        "\\begin{bmatrix} 1 & 2 \\\\ 3 & 4 \\end{bmatrix}",
        true,
    ),
    (
        "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
        "\\begin{pmatrix} 1 & 2 \\\\ 3 & 5 \\end{pmatrix}",
        false,
    ),
    (
        "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
        "\\begin{pmatrix} 1 & 3 \\\\ 2 & 4 \\end{pmatrix}",
        false,
    ),
    (
        "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
        "\\left[\\begin{array}{cc}1 & 2 \\\\3 & 4\\end{array}\\right]",
        true,
    ),
    (
        "\\begin{pmatrix} \\frac12 & 0 \\\\ 0 & 1 \\end{pmatrix}",
        "\\begin{pmatrix} 0.5 & 0 \\\\ 0 & 1 \\end{pmatrix}",
        true,
    ),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "(1,2)", true),
    (
        "\\begin{pmatrix} -1 \\\\ 3 \\\\ 2 \\end{pmatrix}",
        "\\begin{pmatrix} -1 \\\\ 3 \\\\ -2 \\end{pmatrix}",
        false,
    ),
    (
        "\\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}",
        "\\begin{pmatrix} 1 & 0 & 0 \\\\ 0 & 1 & 0 \\end{pmatrix}",
        false,
    ),
    (
        "\\begin{pmatrix}\\frac{1}{3\\sqrt[3]{x}^2}&0\\\\-\\sin(x)&0\\end{pmatrix}",
        "\\begin{pmatrix}\\frac{1}{3x^{2/3}}&0\\\\-\\sin(x)&0\\end{pmatrix}",
        true,
    ),
    // Multiple choice.
    ("\\text{(A)}", "A", true),
    ("\\text{(B)}", "(C)", false),
    ("C", "\\textbf{(C)}", true),
    ("(D)", "D", true),
    ("(D)", "E", false),
    // Infinity.
    ("\\infty", "\\infty", true),
    ("\\infty", "-\\infty", false),
    ("-\\infty", "-\\infty", true),
    ("\\infty", "10^{100}", false),
    // Plain text.
    ("\\text{Evelyn}", "\\text{Evelyn}", true),
    ("\\text{Evelyn}", "Evelyn", true),
    ("\\text{Evelyn}", "\\text{Carla}", false),
    ("\\text{No}", "\\text{Yes}", false),
    ("\\text{yes}", "\\text{Yes}", true),
    ("\\text{Even}", "Even", true),
    ("\\text{Tuesday}", "\\text{ Tuesday }", true),
    ("d", "\\text{E}", false),
    // Base-n subscripts.
    ("204_5", "204_5", true),
    ("204_5", "54", true),
    ("1112112_3", "1112122_3", false),
    // Issue 17: set braces around a single value, regions written as a
    // disjunction or with \neq, square roots of negatives.
    ("5", "\\{5\\}", true),
    ("\\{5\\}", "5", true),
    ("5", "\\{5, 6\\}", false),
    ("5", "\\{6\\}", false),
    ("(-\\infty,3)\\cup(4,\\infty)", "x<3 \\text{ or } x>4", true),
    ("(-\\infty,3)\\cup(4,\\infty)", "x>4 \\text{ or } x<3", true),
    (
        "(-\\infty,3)\\cup(4,\\infty)",
        "x<3 \\text{ or } x\\ge 4",
        false,
    ),
    (
        "(-\\infty,3)\\cup(4,\\infty)",
        "x<3 \\text{ or } x>5",
        false,
    ),
    (
        "(-\\infty,-1]\\cup[1,\\infty)",
        "x \\le -1 \\text{ or } x \\ge 1",
        true,
    ),
    ("x \\neq 2", "x != 2", true),
    ("x \\ne 2", "(-\\infty,2)\\cup(2,\\infty)", true),
    ("x \\neq 2", "x \\neq 3", false),
    ("x \\neq 2", "x = 2", false),
    ("2i", "\\sqrt{-4}", true),
    ("-2i", "\\sqrt{-4}", false),
    ("3i", "\\sqrt{-9}", true),
    ("i\\sqrt{3}", "\\sqrt{-3}", true),
    ("x \\in [-2,7]", "-2 \\le x \\le 7", true),
    ("x \\in [-2,7]", "-2 < x \\le 7", false),
    ("(-\\infty,-8)\\cup(8,\\infty)", "|m| > 8", true),
    ("(-\\infty,-8]\\cup[8,\\infty)", "|m| > 8", false),
    ("[-3,3]", "|x| \\le 3", true),
    (
        "(-\\infty,-2]\\cup[-1,\\infty)",
        "\\mathbb{R} \\setminus (-2,-1)",
        true,
    ),
    (
        "(-\\infty,-2)\\cup(-1,\\infty)",
        "\\mathbb{R} \\setminus (-2,-1)",
        false,
    ),
    (
        "(-\\infty,-7)\\cup(-7,3)\\cup(3,\\infty)",
        "\\mathbb{R}\\setminus\\{3,-7\\}",
        true,
    ),
    (
        "\\begin{pmatrix} 16/49 \\\\ 48/49 \\\\ 24/49 \\end{pmatrix}",
        "\\frac{8}{49}\\begin{pmatrix} 2 \\\\ 6 \\\\ 3 \\end{pmatrix}",
        true,
    ),
    (
        "\\begin{pmatrix} 16/49 \\\\ 48/49 \\\\ 24/49 \\end{pmatrix}",
        "\\frac{8}{49}\\begin{pmatrix} 2 \\\\ 6 \\\\ 4 \\end{pmatrix}",
        false,
    ),
    (
        "\\begin{pmatrix} -1 \\\\ 2 \\end{pmatrix}",
        "-\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}",
        true,
    ),
    ("\\frac{x+2}{7}", "h^{-1}(x)=\\frac{x+2}{7}", true),
    ("\\text{parabola}", "\\text{a parabola}", true),
    ("\\text{parabola}", "\\text{a hyperbola}", false),
    ("12\\pi", "12\\pi \\text{ inches per second}", true),
    ("12\\pi", "12 \\text{ inches per second}", false),
    ("5.4", "5.4\\ \\text{cents}", true),
    ("0.0011_{2}", "0.0011_2", true),
    ("0.0011_2", "0.1875", true),
    ("0.0011_2", "0.0101_2", false),
    ("\\frac{20000}{\\pi}", "6366.2", false),
    ("\\frac{20000}{\\pi}", "6366.19772", true),
    ("\\pi", "3.14159265", true),
    ("\\pi", "3.1416", false),
    ("5", "\\text{five}", true),
    ("6", "\\text{five}", false),
    ("21", "\\text{twenty-one}", true),
    ("105", "\\text{one hundred and five}", true),
    ("3000000", "3 \\text{ million}", true),
    ("3", "3 \\text{ million}", false),
    ("2500000000", "2.5 billion", true),
    ("5\\text{ m}", "5\\text{ m}^2", false),
    ("5\\text{ m}", "5\\text{ meters}", true),
    ("3\\text{ hours}", "3\\text{ minutes}", false),
    ("10\\text{ cm}^2", "10 \\text{ square centimeters}", true),
    ("10\\text{ cm}^2", "10\\text{ cm}", false),
    ("9", "9 \\text{ divisors}", true),
    ("C", "\\textbf{(C)}\\ 7", true),
    ("C", "\\textbf{(D)}\\ 7", false),
    ("52_8", "52", true),
    ("52_8", "42", true),
    ("52_8", "53", false),
    ("33.3", "\\frac{100}{3}", true),
    ("3.14", "\\pi", true),
    ("0.3", "\\frac{1}{3}", false),
    ("33.3", "\\frac{101}{3}", false),
    ("5", "5^{\\mathrm{th}}", true),
    // Thousands separators inside a fraction's braces.
    ("\\frac{1}{29322216}", "\\dfrac{1}{29,\\!322,\\!216}", true),
    ("\\frac{1}{29322216}", "\\frac{1}{29,322,217}", false),
    // Membership in a one-element set is the assignment.
    ("x=5", "x \\in \\{5\\}", true),
    ("x=5", "x \\in \\{5, 6\\}", false),
    ("x=5", "y \\in \\{5\\}", false),
    // A region with points left out.
    ("(0,9) \\cup (9,36)", "0 < x < 36,\\ x \\neq 9", true),
    ("(0,9) \\cup (9,36)", "0 < x < 36", false),
    ("(0,36)", "0 < x < 36, x \\ne 9", false),
    ("(0,36)", "0 < x \\le 36, x \\ne 36", true),
    ("(0,36]", "0 < x \\le 36, x \\ne 40", true),
    // A two-sided bound on an absolute value.
    (
        "1\\leq|z|\\leq \\frac{3}{2}",
        "[-\\frac32,-1] \\cup [1,\\frac32]",
        true,
    ),
    (
        "1\\leq|z|\\leq \\frac{3}{2}",
        "(-\\frac32,-1] \\cup [1,\\frac32]",
        false,
    ),
    // A solution written twice is one solution; a gold's repeat still counts.
    ("(1,2),(3,4)", "(1,2),(3,4),(1, 2)", true),
    ("(1,2),(3,4)", "(1,2),(1,2)", false),
    ("2, 2", "2", false),
    // Named values against an ordered pair: in the order of their names.
    ("(-2,1)", "b=1,\\ a=-2", true),
    ("(-2,1)", "a=1,\\ b=-2", false),
    // Sign choices in a tuple.
    ("(3,2),(-3,2),(3,-2),(-3,-2)", "(\\pm 3, \\pm 2)", true),
    ("(3,2),(-3,2)", "(\\pm 3, \\pm 2)", false),
    // Units with negative powers, primes after a number.
    ("15000 \\text{ kcal m}^{-2} \\text{yr}^{-1}", "15000", true),
    ("15000 \\text{ kcal m}^{-2} \\text{yr}^{-1}", "15001", false),
    ("0.003^{\\prime \\prime}", "0.003''", true),
    ("0.003^{\\prime \\prime}", "0.003 \\text{ arcsec}", true),
    ("0.003^{\\prime\\prime}", "0.004''", false),
    // Matrix layout that draws nothing.
    (
        "\\begin{pmatrix} 16/49 \\\\ 48/49 \\end{pmatrix}",
        "\\begin{pmatrix} \\dfrac{16}{49} \\\\[2pt] \\dfrac{48}{49} \\end{pmatrix}",
        true,
    ),
    (
        "\\begin{pmatrix} 16/49 \\\\ 48/49 \\end{pmatrix}",
        "\\begin{pmatrix} \\dfrac{16}{49} \\\\[2pt] \\dfrac{47}{49} \\end{pmatrix}",
        false,
    ),
    (
        "\\begin{pmatrix} 1 & -1 \\\\ 1 & \\phantom -1 \\end{pmatrix}",
        "\\begin{pmatrix} 1 & -1 \\\\ 1 & 1 \\end{pmatrix}",
        true,
    ),
    (
        "\\begin{pmatrix} 1 & -1 \\\\ 1 & \\phantom{-}1 \\end{pmatrix}",
        "\\begin{pmatrix} 1 & -1 \\\\ 1 & -1 \\end{pmatrix}",
        false,
    ),
    // Choice letters set upright; a value after its choice label.
    ("\\text{(E)}", "\\mathrm{E}", true),
    ("\\text{(E)}", "\\mathrm{D}", false),
    ("27", "\\textbf{(C) } 27", true),
    ("27", "\\textbf{(C) } 28", false),
    // A decimal comma against a decimal point; a thousands comma is not one.
    ("1000.99", "1000,99", true),
    ("1,22", "1.22", true),
    ("0,111", "0.111", true),
    ("12.345", "12,345", false),
    ("1.22", "1,23", false),
    // A segment length as the gold's label.
    ("|AB| = 1", "1", true),
    ("|AB| = 1", "2", false),
    // The exact value before an approximation.
    ("\\frac13", "x = \\frac13 \\approx 0.33", true),
    ("\\frac13", "x = \\frac14 \\approx 0.33", false),
    // A quantity of several unknowns set equal to the value; not an equation to solve.
    ("33", "m + n = 33", true),
    ("33", "m + n = 34", false),
    ("3", "-x = 3", false),
    ("6", "2x = 6", false),
    // How sympy prints values.
    ("[1,3]", "Interval(1, 3)", true),
    ("(1,3]", "Interval(1, 3, True, False)", true),
    ("[1,3]", "Interval(1, 3, True, False)", false),
    ("(0,\\infty)", "Interval.open(0, oo)", true),
    (
        "(-\\infty,1)\\cup(2,\\infty)",
        "Union(Interval.open(-oo, 1), Interval.open(2, oo))",
        true,
    ),
    ("(1, 2)", "Point2D(1, 2)", true),
    ("(1, 2)", "Point2D(2, 1)", false),
    (
        "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
        "Matrix([[1, 2], [3, 4]])",
        true,
    ),
    (
        "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
        "Matrix([[1, 2], [4, 3]])",
        false,
    ),
    ("\\{1,2\\}", "FiniteSet(1, 2)", true),
    ("\\frac12", "Rational(1, 2)", true),
    ("\\frac12", "Rational(1, 3)", false),
    // Day and month names written short.
    ("\\text{Tuesday}", "\\text{Tues}", true),
    ("\\text{Tuesday}", "\\text{Wed}", false),
    // Thousands in a pair whose items are spaced.
    ("(1000, 2)", "(1,000, 2)", true),
    ("(1000, 2)", "(1,001, 2)", false),
    // Matrix arithmetic written out, and the identity and zero matrices by name.
    (
        "\\begin{pmatrix}6 & 8 \\\\ 10 & 12\\end{pmatrix}",
        "\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix} + \\begin{pmatrix}5 & 6 \\\\ 7 & 8\\end{pmatrix}",
        true,
    ),
    (
        "\\begin{pmatrix}6 & 8 \\\\ 10 & 13\\end{pmatrix}",
        "\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix} + \\begin{pmatrix}5 & 6 \\\\ 7 & 8\\end{pmatrix}",
        false,
    ),
    (
        "\\begin{pmatrix}19 & 22 \\\\ 43 & 50\\end{pmatrix}",
        "\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix} \\begin{pmatrix}5 & 6 \\\\ 7 & 8\\end{pmatrix}",
        true,
    ),
    (
        "\\begin{pmatrix}19 & 22 \\\\ 43 & 50\\end{pmatrix}",
        "\\begin{pmatrix}5 & 6 \\\\ 7 & 8\\end{pmatrix} \\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix}",
        false,
    ),
    (
        "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}",
        "-\\mathbf{I}",
        true,
    ),
    (
        "\\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}",
        "-\\mathbf{I}",
        false,
    ),
    (
        "\\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}",
        "I_2",
        true,
    ),
    (
        "\\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}",
        "I_3",
        false,
    ),
    (
        "\\begin{pmatrix} 0 & 0 \\\\ 0 & 0 \\end{pmatrix}",
        "\\mathbf{0}",
        true,
    ),
];

const EXTRACT: &[(&str, &str, bool, bool)] = &[
    // Boxes: last one, nested braces, fbox, box without braces.
    (
        "5",
        "First $\\boxed{3}$, but that ignores a case, so the answer is $\\boxed{5}$.",
        true,
        true,
    ),
    (
        "3",
        "First $\\boxed{3}$, but that ignores a case, so the answer is $\\boxed{5}$.",
        false,
        false,
    ),
    ("\\frac{1}{2}", "We get \\boxed{\\frac{1}{2}}.", true, true),
    ("5", "The answer is \\fbox{5}.", true, true),
    ("5", "The answer is \\boxed 5.", true, true),
    ("\\{1,2\\}", "So $\\boxed{\\{1, 2\\}}$.", true, true),
    (
        "\\frac{\\pi}{4}",
        "The angle is $\\boxed{\\frac{\\pi}{4}}$ radians.",
        true,
        true,
    ),
    ("5", "Unbalanced \\boxed{5", false, true),
    ("6", "Unbalanced \\boxed{5", false, false),
    // Think blocks are ignored.
    (
        "5",
        "<think>Maybe \\boxed{4}?</think> The answer is \\boxed{5}.",
        true,
        true,
    ),
    (
        "4",
        "<think>Maybe \\boxed{4}?</think> The answer is \\boxed{5}.",
        false,
        false,
    ),
    ("4", "<think>still thinking... \\boxed{4}", false, false),
    (
        "24",
        "<think>Let me calculate</think>\nThe answer is \\boxed{24}.",
        true,
        true,
    ),
    // Adjacent boxes form one answer; hedging across boxes fails.
    (
        "5",
        "$\\boxed{1}, \\boxed{2}, \\boxed{3}, \\boxed{4}, \\boxed{5}$",
        false,
        false,
    ),
    (
        "2",
        "The answer is $\\boxed{2}$ or $\\boxed{-2}$.",
        false,
        false,
    ),
    (
        "\\{1,2,3\\}",
        "\\boxed{1},\\boxed{2},\\boxed{3}",
        true,
        true,
    ),
    (
        "k = 45, n = 2",
        "$$\\boxed{k = 45} \\quad \\text{and} \\quad \\boxed{n = 2}$$",
        true,
        true,
    ),
    (
        "(2, 2), (6, 2)",
        "$$\\boxed{(2, 2)} \\quad \\text{and} \\quad \\boxed{(6, 2)}$$",
        true,
        true,
    ),
    // Fallbacks: only in lenient mode.
    (
        "42",
        "Adding the parts gives 40 + 2. Therefore, the answer is 42.",
        false,
        true,
    ),
    ("9", "Answer: 9", false, true),
    ("9", "Answer: 8", false, false),
    ("6", "The answer is not 5; it is 6.", false, true),
    ("3", "The answer is 1 or 2 or 3 or 4.", false, false),
    (
        "\\frac{4}{3}",
        "Final Answer: The final answer is $\\frac{4}{3}$. I hope it is correct.",
        false,
        true,
    ),
    (
        "73",
        "Thus the count is **73**.\n\nFinal Answer: **73**",
        false,
        true,
    ),
    ("9", "Answer $ 9 $", false, true),
    ("9", "Answer \\( 9 \\)", false, true),
    ("9", "Answer \\[ \n 9 \n \\]", false, true),
    ("-5", "-5", false, true),
    ("7425000", "7,425,000", false, true),
    (
        "1000.99",
        "so the number is 10 which is 1,000.99m²",
        false,
        true,
    ),
    (
        "7",
        "Let me compute: first 6 + 1 = 7, then we need to multiply the result by",
        false,
        false,
    ),
    ("3", "", false, false),
    ("3", "I don't know how to solve this problem.", false, false),
    (
        "\\pi",
        "Putting everything together, the answer is π.",
        false,
        true,
    ),
    (
        "\\text{Tuesday}",
        "Putting everything together, the answer is Tuesday.",
        false,
        true,
    ),
    (
        "300000",
        "Putting everything together, the answer is 3e5.",
        false,
        true,
    ),
    // Gold answers as full MATH-style solutions.
    (
        "So $x = 2$ and hence the answer is $\\boxed{14{,}916}$.",
        "\\boxed{14916}",
        true,
        true,
    ),
    (
        "\\(\\boxed{1}\\) and \\(\\boxed{-2}\\).",
        "$\\boxed{-2,1}$.",
        true,
        true,
    ),
    (
        "Final Answer: The final answer is $28 \\%$. I hope it is correct.",
        "\\boxed{28\\%}",
        true,
        true,
    ),
    ("\\\\boxed{004}", "\\boxed{4}", true, true),
    ("5", "Answer: the $5^{\\mathrm{th}}$ term", false, true),
    (
        "5",
        "The answer is 5, because 2 + 3 = 5 and 5 > 4",
        false,
        true,
    ),
    ("5", "Answer: $x$ equals $5$", false, true),
    // The turn ends at an end-of-turn token; what follows is another turn.
    (
        "70",
        "The sum is $\\boxed{70}$.<|im_end|>\n<|im_start|>user\nNow 98_b?<|im_start|>assistant\nIt is $\\boxed{48}$.",
        true,
        true,
    ),
    (
        "48",
        "The sum is $\\boxed{70}$.<|im_end|>\n<|im_start|>user\nNow 98_b?<|im_start|>assistant\nIt is $\\boxed{48}$.",
        false,
        false,
    ),
    (
        "5",
        "<|im_start|>assistant\nSo $\\boxed{5}$.<|im_end|>",
        true,
        true,
    ),
    (
        "5",
        "So the answer is 5.<|eot_id|><|start_header_id|>user: and 6?",
        false,
        true,
    ),
    // A sign-off sentence after the answer, and a fraction as the last number.
    (
        "12",
        "Therefore, there are 12 distinct sequences. I hope it is correct.",
        false,
        true,
    ),
    (
        "2/3",
        "So the probability that Alice wins is 2/3.",
        false,
        true,
    ),
    (
        "2/3",
        "So the probability that Alice wins is 1/3.",
        false,
        false,
    ),
    // A final-answer statement after an intermediate box (evaluation only).
    (
        "10455",
        "interest is $\\boxed{255}$. So he has $10,455. Final Answer: The final answer is $10,455$. I hope it is correct.",
        false,
        true,
    ),
    // The parts of a multi-part gold boxed one by one, in the gold's order.
    (
        "7,4",
        "So she bought $\\boxed{7}$ stuffed goats and $\\boxed{4}$ toy helicopters.",
        true,
        true,
    ),
    (
        "7,4",
        "So she bought $\\boxed{4}$ stuffed goats and $\\boxed{7}$ toy helicopters.",
        false,
        false,
    ),
    (
        "7",
        "Maybe $\\boxed{4}$ goats, so $\\boxed{7}$ in all.",
        true,
        true,
    ),
    // A response escaped twice.
    (
        "(1,2),(2,1)",
        "solutions:\\n\\\\[\\\\boxed{(1, 2)}, \\\\boxed{(2, 1)}\\\\]",
        true,
        true,
    ),
    // Short prose with math: the math span, not the whole text.
    (
        "33",
        "So $m = 25$, $n = 8$, and\n\\[\nm + n = 33.\n\\]",
        false,
        true,
    ),
    // A box taken back: no committed answer (strict), the replacement (lenient).
    (
        "3158",
        "The sum is $\\boxed{3159}$. Hmm, I double counted, so it should be $3158$.",
        false,
        true,
    ),
    (
        "3159",
        "The sum is $\\boxed{3159}$. Hmm, I double counted, so it should be $3158$.",
        false,
        false,
    ),
    (
        "5",
        "So $\\boxed{5}$. This should be right since $2+3=5$.",
        true,
        true,
    ),
    // Digits inside a word are not a number.
    ("2", "AZYUK2A", false, false),
    // `<answer>` tags; the reasoning's box when the summary after it was cut off.
    ("12", "<think>so 12</think><answer>12</answer>", false, true),
    (
        "12",
        "<think>so 12</think><answer>13</answer>",
        false,
        false,
    ),
    (
        "540",
        "<think>so the maximum is $\\boxed{540}$.</think>\nThe maximum is \\[ \\sqrt{324^2 + (-432)^2}",
        false,
        true,
    ),
    (
        "540",
        "<think>so the maximum is $\\boxed{541}$.</think>\nThe maximum is \\[ \\sqrt{324^2 + (-432)^2}",
        false,
        false,
    ),
    // Prose after "Answer:" with a number in it.
    ("625", "### Answer: John spent **$625**.", false, true),
    ("625", "### Answer: John spent **$626**.", false, false),
];

fn check(
    gold: &str,
    response: &str,
    cfg: &GradeConfig,
    expected: bool,
    failures: &mut Vec<String>,
) {
    let g = grade(gold, response, cfg);
    if g.correct != expected {
        failures.push(format!(
            "gold {gold:?} response {response:?}: expected {expected}, got {g:?}"
        ));
    }
}

#[test]
fn equivalence_table() {
    let cfg = GradeConfig::strict();
    let mut failures = vec![];
    for (gold, answer, expected) in EQUIV {
        check(
            gold,
            &format!("The answer is $\\boxed{{{answer}}}$."),
            &cfg,
            *expected,
            &mut failures,
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        EQUIV.len(),
        failures.join("\n")
    );
}

#[test]
fn extraction_table() {
    let (strict, lenient) = (GradeConfig::strict(), GradeConfig::lenient());
    let mut failures = vec![];
    for (gold, response, s, l) in EXTRACT {
        check(gold, response, &strict, *s, &mut failures);
        check(gold, response, &lenient, *l, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "{} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn suite_is_large_and_balanced() {
    let negatives = EQUIV.iter().filter(|r| !r.2).count() + EXTRACT.iter().filter(|r| !r.3).count();
    println!(
        "{} equivalence rows, {} extraction rows, {negatives} near misses",
        EQUIV.len(),
        EXTRACT.len()
    );
    assert!(
        EQUIV.len() + EXTRACT.len() >= 300,
        "{}",
        EQUIV.len() + EXTRACT.len()
    );
    assert!(negatives >= 100, "{negatives} near misses");
}

#[test]
fn percent_modes() {
    let mut cfg = GradeConfig::strict();
    cfg.percent = PercentMode::Fraction;
    assert!(grade("50\\%", "\\boxed{0.5}", &cfg).correct);
    assert!(!grade("50\\%", "\\boxed{50}", &cfg).correct);
    cfg.percent = PercentMode::Number;
    assert!(grade("50\\%", "\\boxed{50}", &cfg).correct);
    assert!(!grade("50\\%", "\\boxed{0.5}", &cfg).correct);
}

#[test]
fn tolerance_is_configurable() {
    let mut cfg = GradeConfig::strict();
    assert!(!grade("\\frac{1}{3}", "\\boxed{0.333}", &cfg).correct);
    cfg.rel_tol = 1e-2;
    assert!(grade("\\frac{1}{3}", "\\boxed{0.333}", &cfg).correct);
    assert!(grade("\\sqrt{2}", "\\boxed{1.41}", &cfg).correct);
    // Exact rationals never use the tolerance.
    assert!(!grade("\\frac{1}{3}", "\\boxed{\\frac{333}{1000}}", &cfg).correct);
}

#[test]
fn reasons_name_what_happened() {
    let cfg = GradeConfig::strict();
    assert_eq!(grade("5", "no box here: 5", &cfg).reason, Reason::NoAnswer);
    assert_eq!(grade("5", "\\boxed{5}", &cfg).reason, Reason::Equivalent);
    assert_eq!(grade("5", "\\boxed{6}", &cfg).reason, Reason::NotEquivalent);
    assert_eq!(
        grade("5", "\\boxed{\\frac{1}{}}", &cfg).reason,
        Reason::Unparseable
    );
    assert_eq!(
        grade("5", "\\boxed{6}", &cfg).extracted.as_deref(),
        Some("6")
    );
}

/// Regression: a `\pm` the expander cannot split (under a root) recursed
/// forever and overflowed the stack (found by the fuzz example).
#[test]
fn unsplittable_plus_minus_does_not_recurse() {
    let cfg = GradeConfig::strict();
    assert!(!grade("2", "\\boxed{\\sqrt{\\pm 4}}", &cfg).correct);
    assert!(!grade("\\sqrt{\\pm 4}", "\\boxed{2}", &cfg).correct);
    assert!(!grade("\\{2, -2\\}", "\\boxed{2^{\\pm 1}}", &cfg).correct);
}

#[test]
fn pathological_inputs_are_unparseable() {
    let cfg = GradeConfig::strict();
    for answer in [
        "10^{10^{10}}".to_string(),
        "2^{2^{2^{2^{2^{2}}}}}".to_string(),
        format!("{}1{}", "{".repeat(10_000), "}".repeat(10_000)),
        format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000)),
        "-".repeat(10_000) + "1",
        "9".repeat(100_000),
        "100000!".to_string(),
        "\\sum_{k=1}^{10^{9}} k".to_string(),
        "\\frac{1}{2}".repeat(3000),
        "1/".repeat(1500) + "1",
        "1\\pm".repeat(1000) + "1",
        "1".to_string() + &"!".repeat(3000),
    ] {
        let g = grade("5", &format!("\\boxed{{{answer}}}"), &cfg);
        assert!(
            !g.correct && g.reason == Reason::Unparseable,
            "{:?}: {g:?}",
            &answer[..answer.len().min(40)]
        );
    }
}

"""python -m autograder COMMAND: the instructor's commands (nbgrader underneath, nothing to configure).

  release   regenerate the student notebooks (notebooks/) from the masters
  student-pack  the zip to hand to students (release + helpers, no solutions)
  grade     grade a folder or LMS zip of submissions: grades.csv, feedback, summary
  merge     merge shard folders (e.g. from a Slurm array) into one grades.csv
  export    rewrite grades.csv from the results of a grading folder
  similarity  flag pairs of submissions that are unusually close (copies): similarity.csv/.html
  feedback  regenerate feedback with the instructor's points and comments, one zip per student
  formgrader  nbgrader's formgrader on a graded folder: grade the written answers and the report
  demo      build the release, grade the bundled example submissions offline, print the table
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import fields
from pathlib import Path

from autograder.build.course import RELEASE_DIR, generate_release
from autograder.grade.parallelism import MEMORY_PER_STUDENT_GB
from autograder.grade.results import GradeOptions
from autograder.review.similarity import SimilarityOptions

DEFAULT_OUT = Path("grading")


def _release(args: argparse.Namespace) -> int:
    for path in generate_release(args.dest):
        print(f"wrote {path}")
    return 0


def _student_pack(args: argparse.Namespace) -> int:
    from autograder.build.student_pack import build_student_pack

    print(f"wrote {build_student_pack(args.dest)}")
    return 0


def _options(args: argparse.Namespace) -> GradeOptions:
    names = {f.name for f in fields(GradeOptions)}
    values = {k: v for k, v in vars(args).items() if k in names and v is not None}
    if getattr(args, "allow_network", False):
        values["no_network"] = False
    return GradeOptions(**values)


def _class_similarity(out: Path, args: argparse.Namespace) -> str | None:
    """Compare the class's staged submissions (unless --no-similarity, or one shard of many:
    then `python -m autograder similarity` runs once on the whole class)."""
    from autograder.grade.runner import parse_shard
    from autograder.review.similarity import similarity_report

    if args.no_similarity or parse_shard(getattr(args, "shard", None))[1] > 1:
        return None
    options = SimilarityOptions(threshold=args.similarity_threshold)
    return similarity_report(out / "staging", out, options).summary_line()


def _print_run(out: Path, summary=None, similarity: str | None = None) -> int:
    from autograder.grade.table import merge_results, summary_text

    table = merge_results(out)
    print(summary_text(table))
    print(f"\ngrades: {out / 'grades.csv'}   feedback: {out / 'feedback'}")
    if similarity:
        print(similarity)
    if (out / "gradebook.db").is_file():
        print(f"written answers and reports, graded by hand: python -m autograder formgrader {out}")
    if summary is not None:
        if summary.grader_changes:
            regraded = len(summary.graded) + len(summary.failed)
            print(f"grader changed since the last run ({', '.join(summary.grader_changes)}): "
                  f"regrading all {regraded} student{'s' * (regraded != 1)}")
        if summary.skipped:
            print(f"already graded, unchanged (skipped): {len(summary.skipped)}")
        print(summary.protections.describe())
        if summary.failed:
            print(f"GRADING FAILED for {', '.join(summary.failed)}: see {out / 'logs'}",
                  file=sys.stderr)
            return 1
    return 0


def _grade(args: argparse.Namespace) -> int:
    from autograder.grade.isolation import NONE, best_sandbox
    from autograder.grade.runner import grade_submissions

    if best_sandbox() == NONE and not args.unsafe:
        print("error: no sandbox on this machine (bubblewrap or Linux user namespaces), so "
              "student code could read and change everything your user can: grade on Linux "
              "with bubblewrap installed, or pass --unsafe", file=sys.stderr)
        return 2
    summary = grade_submissions(args.submissions, args.out, jobs=args.jobs,
                                options=_options(args), id_pattern=args.id_pattern,
                                shard=args.shard, force=args.force)
    out = args.out.resolve()
    return _print_run(out, summary, _class_similarity(out, args))


def _merge(args: argparse.Namespace) -> int:
    from autograder.grade.runner import roster_students
    from autograder.grade.table import merge_results, summary_text

    rosters = {folder: roster_students(folder) for folder in [args.out, *args.shards]}
    missing = [shard for shard in args.shards
               if not (shard / "results").is_dir() and rosters[shard] is None]
    shards = [shard for shard in args.shards if shard not in missing]
    if not any((folder / "results").is_dir() for folder in [args.out, *shards]):
        print(f"No graded student in {args.out}: run `python -m autograder grade` first.",
              file=sys.stderr)
        return 1
    table = merge_results(args.out, shards)
    if shards and (args.out / "gradebooks").is_dir():
        from autograder.grade.runner import prepare_template
        from autograder.review.gradebook import refresh_class_gradebook

        refresh_class_gradebook(args.out, prepare_template(args.out / "work" / "template-merge"))
        table = merge_results(args.out)
    print(summary_text(table))
    print(f"\ngrades: {args.out / 'grades.csv'}")
    if missing:
        print(f"NOT MERGED (no results/ folder; did those tasks run?): "
              f"{', '.join(map(str, missing))}", file=sys.stderr)
    expected = set().union(*(students for students in rosters.values() if students))
    ungraded = sorted(expected - set(table.get("student", [])))
    if ungraded:
        print(f"NO RESULT for {len(ungraded)} student(s) of the class (not in grades.csv): "
              f"{', '.join(ungraded)}", file=sys.stderr)
    return 1 if missing or ungraded else 0


def _feedback(args: argparse.Namespace) -> int:
    from autograder.review.feedback import class_feedback

    root = args.out / "feedback"
    if not root.is_dir():
        print(f"No feedback in {root}: run `python -m autograder grade` first.", file=sys.stderr)
        return 1
    if (args.out / "gradebook.db").is_file():
        done = class_feedback(args.out)
        print(f"feedback regenerated from {args.out / 'gradebook.db'} (manual points and "
              f"comments included) for {len(done)} students")
    dest = args.dest or args.out / "feedback_zips"
    dest.mkdir(parents=True, exist_ok=True)
    for student in sorted(p for p in root.iterdir() if p.is_dir()):
        archive = shutil.make_archive(str(dest / student.name), "zip", student)
        print(f"wrote {archive}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from autograder.demo.hand_in import write_demo_examples
    from autograder.grade.runner import grade_submissions

    out = args.out.resolve()
    with tempfile.TemporaryDirectory(prefix="lora-demo-") as tmp:
        release = Path(tmp) / "release"
        generate_release(release)
        print(f"release built from the masters: {len(list(release.glob('*.ipynb')))} notebooks")
        submissions = Path(tmp) / "submissions"
        for folder in write_demo_examples(submissions, release_dir=release):
            print(f"example submission: {folder.name}")
        summary = grade_submissions(submissions, out, jobs=args.jobs, options=_options(args),
                                    force=True)
    return _print_run(out, summary, _class_similarity(out, args))


def _similarity(args: argparse.Namespace) -> int:
    from autograder.review.similarity import similarity_from_submissions

    options = SimilarityOptions(threshold=args.threshold, min_z=args.min_z)
    result = similarity_from_submissions(args.submissions, args.out, options, args.id_pattern)
    print(result.summary_line())
    print(f"scores: {result.csv_path}   report: {result.html_path}")
    return 0


def _formgrader(args: argparse.Namespace) -> int:
    from autograder.review.formgrader import serve

    try:
        return serve(args.out, args.port, open_browser=False if args.no_browser else None)
    except (FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _check_report(args: argparse.Namespace) -> int:
    from helpers.report_check import main as check_report_main

    return check_report_main([str(args.path), "--instructor"])


def _add_submissions(parser: argparse.ArgumentParser) -> None:
    """The submissions to read, and how to find the student ids in an LMS zip."""
    parser.add_argument("submissions", type=Path,
                        help="folder with one sub-folder or zip per student, or an LMS zip")
    parser.add_argument("--id-pattern", dest="id_pattern",
                        help="regex with a group (?P<id>...) finding the student id in zip paths")


def _add_grading_options(parser: argparse.ArgumentParser, out: Path = DEFAULT_OUT) -> None:
    defaults = GradeOptions()
    parser.add_argument("--out", type=Path, default=out, help=f"output folder (default: ./{out})")
    parser.add_argument("--jobs", type=int, default=None,
                        help="students graded in parallel (default: one per core, "
                             f"{MEMORY_PER_STUDENT_GB:g} GB of free memory each)")
    parser.add_argument("--cell-timeout", dest="cell_timeout", type=int,
                        help=f"seconds per cell (default {defaults.cell_timeout})")
    parser.add_argument("--training-timeout", dest="training_timeout", type=int,
                        help=f"seconds per training cell (default {defaults.training_timeout})")
    parser.add_argument("--memory-gb", dest="memory_gb", type=float,
                        help=f"memory limit per kernel, 0 for none (default {defaults.memory_gb})")
    parser.add_argument("--allow-network", action="store_true",
                        help="let student code use the network (default: cut off where possible)")
    parser.add_argument("--no-similarity", dest="no_similarity", action="store_true",
                        help="skip the class similarity report (similarity.csv/.html)")
    parser.add_argument("--similarity-threshold", dest="similarity_threshold", type=float,
                        default=SimilarityOptions().threshold,
                        help="overall score from which an unusual pair is flagged (default "
                             "%(default)s; see the similarity command)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    release = commands.add_parser("release", help="regenerate notebooks/ from the masters")
    release.add_argument("--dest", type=Path, default=RELEASE_DIR,
                         help=f"output folder (default: {RELEASE_DIR})")
    release.set_defaults(run=_release)

    pack = commands.add_parser("student-pack", help="zip of what students get (no solutions)")
    pack.add_argument("--dest", type=Path, default=Path("dist"), help="default: ./dist")
    pack.set_defaults(run=_student_pack)

    grade = commands.add_parser("grade", help="grade a folder or LMS zip of submissions")
    _add_submissions(grade)
    _add_grading_options(grade)
    grade.add_argument("--shard", type=_shard,
                       help="INDEX/COUNT: grade only this share (cluster arrays)")
    grade.add_argument("--force", action="store_true", help="regrade students already graded")
    grade.add_argument("--unsafe", action="store_true",
                       help="grade even where no sandbox is available (student code then runs "
                            "with all your rights)")
    grade.set_defaults(run=_grade)

    merge = commands.add_parser("merge", help="merge shard folders into one grades.csv")
    merge.add_argument("out", type=Path, help="folder receiving the merged results")
    merge.add_argument("shards", type=Path, nargs="*", help="shard output folders")
    merge.set_defaults(run=_merge)

    export = commands.add_parser("export", help="rewrite grades.csv from a grading folder")
    export.add_argument("out", type=Path, nargs="?", default=DEFAULT_OUT)
    export.set_defaults(run=_merge, shards=[])

    feedback = commands.add_parser("feedback", help="one zip of feedback HTML per student")
    feedback.add_argument("out", type=Path, nargs="?", default=DEFAULT_OUT)
    feedback.add_argument("--dest", type=Path, help="default: OUT/feedback_zips")
    feedback.set_defaults(run=_feedback)

    formgrader = commands.add_parser(
        "formgrader", help="nbgrader's formgrader on a graded folder (written answers, report)",
        description="Start JupyterLab with nbgrader's formgrader on OUT's class gradebook and "
                    "print its URL: Manual grading lists the notebooks with written answers "
                    "(Q1-Q5) and the report, each with every student's answer, a points box "
                    "and a comment box. Then run `export` and `feedback`.")
    formgrader.add_argument("out", type=Path, nargs="?", default=DEFAULT_OUT)
    formgrader.add_argument("--port", type=int, help="default: a free port")
    formgrader.add_argument("--no-browser", dest="no_browser", action="store_true",
                            help="do not open a browser (the default without a display)")
    formgrader.set_defaults(run=_formgrader)

    demo = commands.add_parser("demo", help="grade the example submissions offline")
    _add_grading_options(demo, out=Path("grading-demo"))
    demo.set_defaults(run=_demo)

    defaults = SimilarityOptions()
    similarity = commands.add_parser(
        "similarity", help="flag pairs of submissions unusually close to each other",
        description="Compare every submission with every other and with the reference solution "
                    "(exercise code, written answers, rapport.md; the release's own text "
                    "excluded) and write similarity.csv and similarity.html.")
    _add_submissions(similarity)
    similarity.add_argument("--out", type=Path, default=DEFAULT_OUT,
                            help=f"output folder (default: ./{DEFAULT_OUT})")
    similarity.add_argument("--threshold", type=float, default=defaults.threshold,
                            help="overall score from which a pair can be flagged "
                                 f"(default {defaults.threshold})")
    similarity.add_argument("--min-z", dest="min_z", type=float, default=defaults.min_z,
                            help="how far above the class a flagged pair must be: robust "
                                 "standard deviations above the class's median, averaged over "
                                 f"documents (default {defaults.min_z})")
    similarity.set_defaults(run=_similarity)

    report = commands.add_parser(
        "check-report", help="check rapport.md against the template and the notebooks' outputs",
        description="Check a submission's rapport.md: sections answered, header filled, images "
                    "present, quoted numbers found in the notebooks' outputs. Exit status: 0 "
                    "complete with no finding, 1 findings to fix, 2 usage error.")
    report.add_argument("path", type=Path,
                        help="submission folder: rapport.md, img/ and the executed notebooks")
    report.set_defaults(run=_check_report)
    return parser


def _shard(text: str) -> str:
    from autograder.grade.runner import parse_shard

    try:
        parse_shard(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def main(argv: list[str] | None = None) -> int:
    from autograder.grade.staging import SubmissionError

    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except SubmissionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

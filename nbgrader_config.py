"""nbgrader settings for the student's Validate button (JupyterLab started from this folder).

Validate runs a notebook top to bottom with its visible checks. The instructor's commands
(`python -m autograder ...`) configure nbgrader in code and do not need this file.
"""

c = get_config()  # noqa: F821 (nbgrader defines get_config when it loads this file)
c.CourseDirectory.course_id = "lora_lab"
# nbgrader's 30 s per cell is too short for the training cells of 05 on a laptop CPU
c.Execute.timeout = 900

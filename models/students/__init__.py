"""Students distilled from the teacher's labels: configurations, network, trained policy."""

from models.students.config import CONFIGS, StudentConfig, student_config
from models.students.model import Student, parameter_count, set_loss
from models.students.policy import StudentPolicy, load_student_model, save_student

__all__ = ["CONFIGS", "Student", "StudentConfig", "StudentPolicy", "load_student_model", "parameter_count",
           "save_student", "set_loss", "student_config"]

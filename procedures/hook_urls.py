app_name = "hooks"

urlpatterns = []
